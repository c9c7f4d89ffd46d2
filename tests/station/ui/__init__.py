"""Tests for station.ui."""
