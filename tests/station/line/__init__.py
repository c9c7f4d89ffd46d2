"""Tests for station.line."""
