"""The simulators' timing model: link, latency and flash costs turned into wall time, and counted.

A simulator calls ``spend(seconds, what)`` for every cost its hardware would incur. With the model
on, the caller waits that long; either way the cost is added to ``spent`` so a benchmark can
compare the station's wall time with what the modelled hardware needs at the least.

Costs are charged against a running deadline instead of sleeping each one: thousands of 1 ms
USB transactions would otherwise each oversleep, and the sum would drift far above the model.
For the same reason a sleep that wakes late is not charged to the device: the next cost starts
from when the device would have finished, not from when the OS woke its thread.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

# Below this much owed time, do not sleep yet: the OS cannot sleep that precisely anyway.
_SLEEP_GRANULARITY = 0.002
# A wake-up later than this is the machine being overloaded, not timer slack: it is not taken back.
_MAX_LATE = 0.005


@dataclass(frozen=True)
class LinkSpec:
    """A link's cost model: bytes per second and a fixed cost per transaction."""

    bytes_per_second: float
    latency: float  # seconds per transaction (request + answer turnaround)

    def cost(self, nbytes: int, transactions: int = 1) -> float:
        return transactions * self.latency + nbytes / self.bytes_per_second


@dataclass(frozen=True)
class FlashSpec:
    """A flash part's erase and program times (datasheet typical values)."""

    sector_erase: float  # seconds per erase unit
    program_per_byte: float  # seconds per byte programmed

    def erase_cost(self, sectors: int) -> float:
        return sectors * self.sector_erase

    def program_cost(self, nbytes: int) -> float:
        return nbytes * self.program_per_byte


class TimingModel:
    """Counts modelled costs and, when ``enabled``, makes the caller wait for them."""

    def __init__(
        self,
        enabled: bool = True,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.enabled = enabled
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._due: float | None = None
        self._late = 0.0  # how late the last sleep woke past its deadline: the OS's, not the device's
        self.spent = 0.0
        self.by_kind: dict[str, float] = defaultdict(float)
        # Work a device does after it has answered, while the next request is still on the wire
        # (the ESP flasher stub's erase and program): counted here, owed only when ``join`` is called.
        self.overlapped_by_kind: dict[str, float] = defaultdict(float)
        self._background_modelled = 0.0  # when that work ends, on the ``spent`` timeline
        self._background_due: float | None = None  # and on the wall clock

    def spend(self, seconds: float, what: str = "other") -> None:
        if seconds <= 0:
            return
        with self._lock:
            self.spent += seconds
            self.by_kind[what] += seconds
            if not self.enabled:
                return
            now = self._clock()
            # Idle time between calls (the host thinking) is not owed back by the device; the
            # oversleep of the last wait is not idle time.
            start = now - self._late
            self._late = 0.0
            due = max(self._due if self._due is not None else start, start) + seconds
            self._due = due
            wait = due - now
        if wait > _SLEEP_GRANULARITY:
            self._sleep(wait)
            woke = self._clock()
            with self._lock:
                if self._due == due:  # nothing was charged meanwhile from another thread
                    self._late = min(max(woke - due, 0.0), _MAX_LATE)

    def background(self, seconds: float, what: str = "other") -> None:
        """The device starts ``seconds`` of work that runs behind the link: nobody waits for it
        until ``join``. It starts when the device is free (after its last answer and any earlier
        background work)."""
        if seconds <= 0:
            return
        with self._lock:
            self.overlapped_by_kind[what] += seconds
            self._background_modelled = max(self._background_modelled, self.spent) + seconds
            if not self.enabled:
                return
            now = self._clock()
            free = max(self._background_due or now, self._due or now, now)
            self._background_due = free + seconds

    def join(self, what: str = "busy") -> None:
        """The device cannot take the next request before its background work is done: wait for it."""
        with self._lock:
            owed = self._background_modelled - self.spent
            if owed > 0:
                self.spent += owed
                self.by_kind[what] += owed
            due = self._background_due
            if not self.enabled or due is None:
                return
            now = self._clock()
            if self._due is None or due > self._due:
                self._due = due
            wait = due - now
        if wait > _SLEEP_GRANULARITY:
            self._sleep(wait)

    def reset(self) -> None:
        with self._lock:
            self.spent = 0.0
            self.by_kind.clear()
            self.overlapped_by_kind.clear()
            self._due = None
            self._late = 0.0
            self._background_modelled = 0.0
            self._background_due = None
