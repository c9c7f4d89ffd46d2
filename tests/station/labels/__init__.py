"""Tests of station.labels: unit labels, their ZPL, PNG preview and printers."""
