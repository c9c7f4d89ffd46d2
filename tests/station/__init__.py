"""Tests for station."""
