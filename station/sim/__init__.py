"""Simulated devices and a simulated cloud console: product code for tests, benchmarks and demos.

Production code never imports this package.
"""
