"""Serial-number scans: which slot is waiting for one, and what of a scanned code is kept.

A keyboard-emulating scanner types the sticker's code and Enter. Particle's sticker holds
``SERIAL MOBILE_SECRET`` separated by a space: only the first word, the serial number, is kept;
the rest never leaves ``serial_from_code`` (it is not stored, logged, or put in an event or an
error message).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.errors import InputError, StationError

SCAN_PROMPT = "scan the unit's label"
MAX_CODE_CHARS = 512
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


class ScanRejected(InputError):
    """A scan that went nowhere: no slot waiting, an unknown slot, or not a serial number."""


def serial_from_code(code: str) -> str:
    """The serial number in a scanned code: its first word. Raises ScanRejected (naming only the
    length, never the code, which may hold the mobile secret)."""
    if len(code) > MAX_CODE_CHARS:
        raise ScanRejected(f"the scanned code is longer than {MAX_CODE_CHARS} characters")
    words = code.strip().split()
    if not words or not _SERIAL.fullmatch(words[0]):
        raise ScanRejected(
            "the scanned code does not start with a serial number",
            hint="scan the unit's serial-number label (SERIAL, or SERIAL MOBILE_SECRET)",
        )
    return words[0]


@dataclass
class _Waiting:
    slot: str
    label: str
    attempt_id: int
    device_id: str
    since: float
    serial: str | None = None
    error: StationError | None = None
    done: threading.Event | None = None


# Commits the link (attempt id, serial, device id) or raises (the serial is in use).
Link = Callable[[int, str, str], None]


class ScanDesk:
    """Where scans meet the boards waiting for them. Thread-safe: workers wait, a UI offers.

    The link is committed by ``offer``, in the order the scans arrive, before the waiting board
    is released: the first board scanned with a sticker keeps it, whatever its worker does next.
    """

    def __init__(self, link: Link, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiting] = {}
        self._closed = False
        self._link = link
        self._monotonic = monotonic

    def wait(
        self, slot: str, label: str, attempt_id: int, device_id: str, abandoned: threading.Event, poll: float = 0.1
    ) -> str | None:
        """Block until a serial number is linked to this board; None when the desk closes or the job
        is abandoned; the link's error (a serial number in use) is raised here."""
        done = threading.Event()
        with self._lock:
            if self._closed:
                return None
            entry = _Waiting(slot, label, attempt_id, device_id, self._monotonic(), done=done)
            self._waiting[slot] = entry
        try:
            while not done.wait(poll):
                if abandoned.is_set():
                    return None
            if entry.error is not None:
                raise entry.error
            return entry.serial
        finally:
            with self._lock:
                if self._waiting.get(slot) is entry:
                    del self._waiting[slot]

    def waiting(self) -> list[str]:
        """Slots waiting for a scan, the most recent first."""
        with self._lock:
            return [w.slot for w in sorted(self._waiting.values(), key=lambda w: -w.since)]

    def is_waiting(self, slot: str) -> bool:
        with self._lock:
            return slot in self._waiting

    def offer(self, code: str, slot: str | None = None) -> tuple[str, str]:
        """Hand a scanned code to ``slot`` (a port path or a label), or else to the board that began
        waiting last (the one just plugged in). Returns (slot, serial); ScanRejected if none fits."""
        serial = serial_from_code(code)
        with self._lock:
            if slot is not None:
                target = self._waiting.get(slot) or next((w for w in self._waiting.values() if w.label == slot), None)
                if target is None:
                    raise ScanRejected(
                        f"slot {slot} is not waiting for a scan", hint="scan for a slot whose tile asks for one"
                    )
            else:
                if not self._waiting:
                    raise ScanRejected("no board is waiting for a scan", hint="plug the board in first")
                target = max(self._waiting.values(), key=lambda w: w.since)
            try:
                self._link(target.attempt_id, serial, target.device_id)
            except StationError as exc:  # the board fails with it; the scan itself was delivered
                target.error = exc
            target.serial = serial
            del self._waiting[target.slot]
            assert target.done is not None
            target.done.set()
            return target.slot, serial

    def close(self) -> None:
        """The line stops: every waiting board gives up (it was not written to)."""
        with self._lock:
            self._closed = True
            for entry in self._waiting.values():
                assert entry.done is not None
                entry.done.set()
            self._waiting.clear()
