"""Per-unit serial numbers in the registry: handed out from a counter or a list, each at most once.

A number is reserved (committed) before anything is written to a board, so a crash can never hand
it out twice. It becomes 'used' when its attempt passes, goes back to 'free' when its attempt fails
(the next board gets it: a counter only moves on for good on a PASS, a list keeps its order), and is
'lost' when its attempt was interrupted (the board may hold it; it is never handed out again).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from station.store.errors import RegistryError


@dataclass(frozen=True)
class SerialSource:
    """Where a line's serial numbers come from: ``pool`` names them in the registry.

    A counter gives ``prefix`` + the number zero-padded to ``digits``, from ``start``; a list gives
    ``serials`` in order (loaded into the pool once; a number already known is never added again).
    """

    pool: str
    start: int | None = None
    prefix: str = ""
    digits: int = 6
    serials: tuple[str, ...] | None = None

    def format(self, value: int) -> str:
        return f"{self.prefix}{value:0{self.digits}d}"


@dataclass(frozen=True)
class UnitSerial:
    serial: str
    pool: str
    state: str
    attempt_id: int | None


class SerialsExhausted(RegistryError):
    """The list has no unused number left."""


def load_list(conn: sqlite3.Connection, source: SerialSource, now: float) -> None:
    """Add the list's numbers the registry does not know yet, as free, in list order."""
    if source.serials is None:
        return
    base = conn.execute("SELECT coalesce(max(ordinal), 0) FROM unit_serials WHERE pool = ?", (source.pool,)).fetchone()
    conn.executemany(
        "INSERT OR IGNORE INTO unit_serials (serial, pool, ordinal, state, updated_at) VALUES (?, ?, ?, 'free', ?)",
        [(serial, source.pool, int(base[0]) + i, now) for i, serial in enumerate(source.serials, 1)],
    )


def reserve_in(conn: sqlite3.Connection, attempt_id: int, source: SerialSource, now: float) -> str:
    """Reserve the next number of ``source`` for ``attempt_id`` (inside the caller's write transaction)."""
    held = conn.execute(
        "SELECT serial FROM unit_serials WHERE attempt_id = ? AND state = 'reserved'", (attempt_id,)
    ).fetchone()
    if held is not None:
        return str(held[0])
    row = conn.execute(
        "SELECT serial FROM unit_serials WHERE pool = ? AND state = 'free' ORDER BY ordinal LIMIT 1", (source.pool,)
    ).fetchone()
    if row is not None:
        serial = str(row[0])
        conn.execute(
            "UPDATE unit_serials SET state = 'reserved', attempt_id = ?, updated_at = ? WHERE serial = ?",
            (attempt_id, now, serial),
        )
    elif source.start is not None:
        conn.execute(
            "INSERT OR IGNORE INTO unit_counters (pool, next_value) VALUES (?, ?)", (source.pool, source.start)
        )
        value = int(conn.execute("SELECT next_value FROM unit_counters WHERE pool = ?", (source.pool,)).fetchone()[0])
        # Skip numbers another pool already holds: a serial is unique across the registry.
        while conn.execute("SELECT 1 FROM unit_serials WHERE serial = ?", (source.format(value),)).fetchone():
            value += 1
        serial = source.format(value)
        conn.execute(
            "INSERT INTO unit_serials (serial, pool, ordinal, state, attempt_id, updated_at)"
            " VALUES (?, ?, ?, 'reserved', ?, ?)",
            (serial, source.pool, value, attempt_id, now),
        )
        conn.execute("UPDATE unit_counters SET next_value = ? WHERE pool = ?", (value + 1, source.pool))
    else:
        raise SerialsExhausted(
            f"no unused serial number is left in the list {source.pool!r}",
            hint="add numbers to the profile's serial list",
        )
    conn.execute("UPDATE attempts SET unit_serial = ? WHERE id = ?", (serial, attempt_id))
    return serial


# A job that timed out may still be writing when the line gives up on it: its number is not reused.
_UNSURE_FAILURES = frozenset({"timeout", "interrupted"})


def settle_in(conn: sqlite3.Connection, attempt_id: int, result: str, error_code: str | None, now: float) -> None:
    """What the attempt's end means for its reserved number (inside the transaction that ends it)."""
    state = {"pass": "used", "fail": "free"}.get(result, "lost")
    if state == "free" and error_code in _UNSURE_FAILURES:
        state = "lost"
    conn.execute(
        "UPDATE unit_serials SET state = ?, updated_at = ?,"
        " attempt_id = CASE WHEN ? = 'free' THEN NULL ELSE attempt_id END"
        " WHERE attempt_id = ? AND state = 'reserved'",
        (state, now, state, attempt_id),
    )


def serials_in(conn: sqlite3.Connection, pool: str | None = None) -> list[UnitSerial]:
    where, params = (" WHERE pool = ?", [pool]) if pool is not None else ("", [])
    return [
        UnitSerial(str(s), str(p), str(st), None if a is None else int(a))
        for s, p, st, a in conn.execute(
            f"SELECT serial, pool, state, attempt_id FROM unit_serials{where} ORDER BY pool, ordinal", params
        )
    ]
