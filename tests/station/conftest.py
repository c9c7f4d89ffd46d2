"""Station tests never touch the user's real registry: commands that record without --db (the audit
entry of `station console lock`, say) get a registry of their own per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from station.store.paths import DB_ENV


@pytest.fixture(autouse=True)
def _private_default_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get(DB_ENV):
        monkeypatch.setenv(DB_ENV, str(tmp_path / "default-registry" / "station.db"))
