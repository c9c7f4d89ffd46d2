"""Shared test helpers: where the reference corpus is, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The read-only reference corpus lies beside the project; BENCHFLASH_FIXTURES points elsewhere.
FIXTURES = Path(os.environ.get("BENCHFLASH_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_dir(family: str) -> Path:
    """The corpus folder for ``family`` ("particle" or "esp"), or skip the test saying why."""
    path = FIXTURES / family
    if not path.is_dir():
        pytest.skip(f"reference corpus not found at {path} (set BENCHFLASH_FIXTURES)")
    return path


def fixture_files(family: str, pattern: str = "*.bin") -> list[Path]:
    """Fixture files for parametrising at collection time; empty (tests then skip) when absent."""
    path = FIXTURES / family
    return sorted(path.glob(pattern)) if path.is_dir() else []
