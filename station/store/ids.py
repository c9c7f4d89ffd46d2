"""Checks on device IDs before they reach a table or the console's import file (one ID per line)."""

from __future__ import annotations

import re

from station.store.errors import InvalidRecord

MAX_DEVICE_ID = 64
MAX_QUEUED_ID = 256
# Particle IDs are 24 hex digits and ESP IDs a MAC; anything of letters, digits and : . _ - is kept.
_DEVICE_ID = re.compile(r"[0-9a-z][0-9a-z:._-]*")
_NO_SPACE = re.compile(r"[^\s\x00-\x1f\x7f]+")


def normalize_device_id(device_id: str) -> str:
    """The canonical form of an ID a device reported: trimmed, lower case, checked."""
    value = device_id.strip().lower()
    if not value or len(value) > MAX_DEVICE_ID or not _DEVICE_ID.fullmatch(value):
        raise InvalidRecord(
            f"device reported an unusable ID {device_id[:80]!r}",
            hint=f"expected up to {MAX_DEVICE_ID} letters, digits, ':', '.', '_' or '-'",
        )
    return value


def check_queued_id(device_id: str) -> str:
    """An ID handed to the outbox: kept as given (the cloud judges it) unless it would break a line."""
    if not device_id or len(device_id) > MAX_QUEUED_ID or not _NO_SPACE.fullmatch(device_id):
        raise InvalidRecord(
            f"outbox: unusable device ID {device_id[:80]!r}",
            hint="an ID must be one word without spaces or control characters",
        )
    return device_id
