"""The sync outbox: which recorded devices still have to be imported into which product.

A row changes state only when the sync worker hands in a parsed cloud answer (``resolve``) or a
failed request (``note_error``); enqueueing is idempotent, so retrying never changes a result.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from station.store.errors import RegistryError
from station.store.ids import check_queued_id

if TYPE_CHECKING:
    from station.store.registry import Registry

MAX_ERROR_CHARS = 2000


class OutboxState(StrEnum):
    PENDING = "pending"
    SYNCED = "synced"  # the cloud answered updated or already existing
    INVALID = "invalid"  # invalidDeviceIds
    NEEDS_ATTENTION = "needs-attention"  # nonmemberDeviceIds: claimed by an account outside the team
    PROTECTED = "protected"  # protectedDeviceIds


@dataclass(frozen=True)
class OutboxEntry:
    device_id: str
    product: str  # product id or slug as the profile names it
    state: OutboxState
    enqueued_at: float  # unix seconds
    updated_at: float
    tries: int  # requests that carried this device and got no parsed answer / a batch error
    last_error: str | None
    group: str | None  # device group for the batch; None = none


_COLUMNS = "device_id, product, state, enqueued_at, updated_at, tries, last_error, device_group"


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    device_id, product, state, enqueued_at, updated_at, tries, last_error, group = row
    return OutboxEntry(
        device_id=str(device_id),
        product=str(product),
        state=OutboxState(str(state)),
        enqueued_at=float(enqueued_at),
        updated_at=float(updated_at),
        tries=int(tries),
        last_error=None if last_error is None else str(last_error),
        group=None if group is None else str(group),
    )


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:MAX_ERROR_CHARS]


def _check_product(product: str) -> str:
    if not product or not product.strip():
        raise RegistryError("outbox: the product must not be empty", hint="name the product id or slug")
    return product


def enqueue_in(conn: sqlite3.Connection, device_id: str, product: str, group: str | None, now: float) -> None:
    """Queue ``device_id`` for ``product`` inside the caller's transaction (PASS and queue together)."""
    conn.execute(
        "INSERT INTO outbox (product, device_id, device_group, enqueued_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (product, device_id) DO NOTHING",
        (_check_product(product), device_id, group, now, now),
    )


class Outbox:
    """The outbox of one registry; every call is one transaction and safe from several threads."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @property
    def registry(self) -> Registry:
        return self._registry

    def enqueue(self, device_id: str, product: str, *, group: str | None = None) -> None:
        """Idempotent: a device already queued for ``product`` keeps its row and state."""
        device = check_queued_id(device_id)
        with self._registry._writing() as (conn, now):
            enqueue_in(conn, device, product, group, now)

    def enqueue_many(self, device_ids: Iterable[str], product: str, *, group: str | None = None) -> int:
        """``enqueue`` for many devices in one transaction (one commit, not one per ID); returns
        how many were newly queued."""
        devices = [check_queued_id(d) for d in device_ids]
        with self._registry._writing() as (conn, now):
            before = conn.total_changes
            for device in devices:
                enqueue_in(conn, device, product, group, now)
            return conn.total_changes - before

    def pending(self, product: str | None = None, *, limit: int = 1000) -> list[OutboxEntry]:
        """Pending entries, oldest first."""
        if limit <= 0:
            return []
        with self._registry._reading() as conn:
            if product is None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND product = ? ORDER BY id LIMIT ?",
                    (product, limit),
                ).fetchall()
        return [_entry(row) for row in rows]

    def resolve(self, product: str, outcomes: Mapping[str, tuple[OutboxState, str | None]]) -> None:
        """Record a parsed cloud answer for ``product`` in one transaction; unknown IDs are ignored."""
        rows = [(OutboxState(state).value, _clip(error), device_id) for device_id, (state, error) in outcomes.items()]
        with self._registry._writing() as (conn, now):
            conn.executemany(
                "UPDATE outbox SET state = ?, last_error = ?, updated_at = ? WHERE product = ? AND device_id = ?",
                [(state, error, now, product, device) for state, error, device in rows],
            )

    def note_error(self, product: str, device_ids: Sequence[str], error: str) -> None:
        """A request carrying these devices failed: count the try and keep the error; they stay pending.

        Only pending rows are touched: a late error never overrides an answer already recorded.
        """
        devices = list(device_ids)
        with self._registry._writing() as (conn, now):
            conn.executemany(
                "UPDATE outbox SET tries = tries + 1, last_error = ?, updated_at = ?"
                " WHERE product = ? AND device_id = ? AND state = 'pending'",
                [(_clip(error), now, product, device) for device in devices],
            )

    def counts(self, product: str | None = None) -> dict[OutboxState, int]:
        """Entries per state (every state present, zero where none)."""
        counts = dict.fromkeys(OutboxState, 0)
        with self._registry._reading() as conn:
            if product is None:
                rows = conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
            else:
                rows = conn.execute(
                    "SELECT state, count(*) FROM outbox WHERE product = ? GROUP BY state", (product,)
                ).fetchall()
        for state, count in rows:
            counts[OutboxState(state)] = int(count)
        return counts

    def entries(self, *, state: OutboxState | None = None, product: str | None = None) -> list[OutboxEntry]:
        """Entries in the order they were queued, filtered by state and product when given."""
        where: list[str] = []
        params: list[str] = []
        if state is not None:
            where.append("state = ?")
            params.append(OutboxState(state).value)
        if product is not None:
            where.append("product = ?")
            params.append(product)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._registry._reading() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox{clause} ORDER BY id", params).fetchall()
        return [_entry(row) for row in rows]
