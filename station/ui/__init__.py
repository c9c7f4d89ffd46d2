"""Sinks for line events: terminal dashboard, JSON lines, plain log."""
