"""Tests for station.discovery."""
