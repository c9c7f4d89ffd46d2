"""How long to wait before trying the cloud again, and a client-side limiter that keeps the station
under the API's request budget. Clock, sleep and randomness are injected so tests run in no time."""

from __future__ import annotations

import email.utils
import math
import random as _random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# A Retry-After is untrusted input: honour it, but never park the station longer than this.
MAX_RETRY_AFTER = 900.0
# A slot frees a hair after the window edge, so float rounding never lands one request inside it.
_EDGE = 1e-6
# ASCII digits only: str.isdigit() also accepts superscripts, which int() refuses.
_DELTA_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter; a server's Retry-After wins when it sends one.

    Attempt 0 waits about ``base`` seconds, each next attempt doubles, up to ``cap``. Half of each
    wait is random so that stations behind one IP do not retry in lockstep.
    """

    base: float = 1.0
    cap: float = 300.0
    factor: float = 2.0

    def delay(
        self, attempt: int, *, retry_after: float | None = None, random: Callable[[], float] = _random.random
    ) -> float:
        if retry_after is not None and retry_after >= 0:
            # A little jitter on top spreads stations that were all told the same moment.
            return min(retry_after, MAX_RETRY_AFTER) + random() * min(self.base, 1.0)
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return ceiling / 2 + random() * ceiling / 2


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return min(float(int(text[:12])), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RateLimiter:
    """At most ``limit`` requests in any ``window`` seconds (a sliding log of send times).

    ``acquire()`` reserves the next slot, sleeping until it is free. Safe from several threads: each
    caller reserves its slot under the lock, then sleeps outside it.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self.waited = 0.0  # total seconds callers were held back, for reports and benchmarks

    def acquire(self) -> float:
        """Wait for a free slot; return the seconds waited."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            # When full, the slot frees as the request `limit` places back leaves the window.
            full = len(self._sent) >= self.limit
            slot = self._sent[-self.limit] + self.window + _EDGE if full else now
            self._sent.append(max(slot, now))
            # Reservations may be later than earlier ones' real sends; keep the log bounded anyway.
            while len(self._sent) > self.limit:
                self._sent.popleft()
            wait = max(0.0, slot - now)
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def in_window(self) -> int:
        """Requests sent (or reserved) within the current window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._sent if t > now - self.window)
