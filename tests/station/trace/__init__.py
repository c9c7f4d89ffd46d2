"""Tests of station.trace: operators, roles, the audit chain, the release floor."""
