"""Bridging re-enumeration: a slot stays reported for a moment after its device vanished.

A Particle board leaving DFU mode, entering it, or rebooting after a YModem transfer drops off USB
and comes back on the same port a second or two later. Without a grace period the line would take
that for an unplug followed by a new board, and flash the board it has just passed once more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from station.discovery.base import Candidate

C = TypeVar("C", bound=Candidate)

# Longer than a Particle reset's re-enumeration, shorter than a technician swapping boards.
DEFAULT_LINGER = 2.5


class Linger:
    """Keeps each slot's last candidate for ``seconds`` after it stopped being seen."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[Candidate, float]] = {}

    def apply(self, found: Sequence[C]) -> list[Candidate]:
        """``found`` plus the slots that vanished less than ``seconds`` ago, sorted by slot."""
        if self.seconds <= 0:
            return sorted(found, key=lambda c: c.slot)
        now = self._clock()
        with self._lock:
            for candidate in found:
                self._last[candidate.slot] = (candidate, now)
            for slot, (_, seen) in list(self._last.items()):
                if now - seen > self.seconds:
                    del self._last[slot]
            return [candidate for _, (candidate, _) in sorted(self._last.items())]
