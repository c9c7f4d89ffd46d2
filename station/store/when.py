"""Reading ``--since WHEN``: an ISO date or date-time (local time unless it names a zone) or an age
such as ``90s``, ``15m``, ``2h``, ``3d``, ``1w``."""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime, tzinfo

from station.errors import InputError

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_AGE_SECONDS = 100 * 365 * 86400.0


def parse_since(text: str, *, now: float, tz: tzinfo | None = None) -> float:
    """The unix time ``text`` names; ``tz`` is the zone of a time without one (default: local)."""
    value = text.strip()
    age = _AGE.fullmatch(value.lower())
    if age:
        seconds = float(age.group(1)) * _UNIT_SECONDS[age.group(2)]
        if seconds > MAX_AGE_SECONDS:
            raise InputError(f"--since {text!r} reaches back more than a century")
        return now - seconds
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--since {text!r} is neither a date nor an age",
            hint="use e.g. 2h, 3d, 2026-11-26 or 2026-11-26T08:00",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz is not None else when.astimezone()
    return when.timestamp()


@functools.cache
def _times_of_day() -> tuple[str, ...]:
    """ "HH:MM:SS." for every second of a day, made once, on first use."""
    return tuple(f"{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60) for s in range(60))


class UtcFormatter:
    """Unix times as ISO 8601 in UTC with milliseconds, e.g. ``2026-11-26T07:19:22.123Z``.

    Built for exports of millions of rows: the date of each day seen is remembered, and the time
    of day comes from a table made on first use, so no datetime is built per row.
    """

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, timestamp: float | None) -> str | None:
        if timestamp is None:
            return None
        # Split as datetime.fromtimestamp does, so both agree to the millisecond.
        fraction, whole = math.modf(timestamp)
        micros = int(whole) * 1_000_000 + round(fraction * 1_000_000)
        seconds, micros = divmod(micros, 1_000_000)
        day, second_of_day = divmod(seconds, 86400)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
            self._days[day] = prefix
        return f"{prefix}{_times_of_day()[second_of_day]}{micros // 1000:03d}Z"


def iso_utc(timestamp: float | None) -> str | None:
    """A unix time as ISO 8601 in UTC with milliseconds, e.g. ``2026-11-26T07:19:22.123Z``."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_time(timestamp: float | None, tz: tzinfo | None = None) -> str:
    """A unix time for people: ``2026-11-26 08:19:22`` in ``tz`` (default: local)."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S")
