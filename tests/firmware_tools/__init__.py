"""Tests for firmware_tools."""
