"""Traceability tables: serial number <-> device ID links, operators, the label queue, release floors.

Every write is one committed transaction, and the ones that change what goes on a board or into
the console append their audit entry in that same transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from station.errors import Reason
from station.store.audit import AuditAction, append_in
from station.store.errors import InvalidRecord, RegistryError
from station.store.ids import normalize_device_id
from station.store.when import local_time

if TYPE_CHECKING:
    from station.store.registry import Registry

# What a serial number may be: the sticker's first word. Printable, no spaces, bounded.
SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
OPERATOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


class SerialInUse(RegistryError):
    """A serial number or a device already linked to another: the board fails, nothing is written."""

    reason = Reason.SERIAL_IN_USE


class OperatorError(RegistryError):
    exit_code = 2
    reason = Reason.BAD_INPUT


def check_serial(serial: str) -> str:
    if not SERIAL_RE.fullmatch(serial):
        raise InvalidRecord(
            f"{serial[:40]!r} is not a serial number",
            hint="up to 64 letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit",
        )
    return serial


def check_operator_name(name: str) -> str:
    name = name.strip()
    if not OPERATOR_RE.fullmatch(name):
        raise OperatorError(
            f"operator name {name[:40]!r} is not usable", hint="1-64 letters, digits, spaces, '.', '_', '@' or '-'"
        )
    return name


@dataclass(frozen=True)
class SerialLink:
    serial: str
    device_id: str
    attempt_id: int | None
    station_id: str
    scanned_at: float


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    pin_hash: str
    disabled: bool
    created_at: float
    updated_at: float


class LabelState(StrEnum):
    QUEUED = "queued"
    PRINTED = "printed"
    FAILED = "failed"


@dataclass(frozen=True)
class LabelRecord:
    id: int
    device_id: str
    attempt_id: int | None
    state: LabelState
    payload: str  # what the QR code holds
    fields: Mapping[str, str]  # the label's text lines, by name
    printer: str | None
    tries: int
    last_error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Actor:
    """Who acts, for the audit entry an action appends."""

    name: str
    role: str
    station_id: str


class Trace:
    """The traceability tables of one registry (``registry.trace``)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    # -- serial numbers --------------------------------------------------------------------

    def link_serial(self, serial: str, device_id: str, *, attempt_id: int | None, actor: Actor) -> SerialLink:
        """Link a scanned serial number to a device (both unique), with its audit entry, committed.

        Scanning the same sticker for the same board again is a no-op; any other reuse raises
        SerialInUse naming the device and date it is linked to.
        """
        check_serial(serial)
        device = normalize_device_id(device_id)
        with self._registry._writing() as (conn, now):
            row = conn.execute(
                "SELECT serial, device_id, attempt_id, station_id, scanned_at FROM serials"
                " WHERE serial = ? OR device_id = ?",
                (serial, device),
            ).fetchone()
            if row is not None:
                found = SerialLink(str(row[0]), str(row[1]), row[2], str(row[3]), float(row[4]))
                if found.serial == serial and found.device_id == device:
                    return found
                if found.serial == serial:
                    raise SerialInUse(
                        f"serial number {serial} already used by {found.device_id} on {local_time(found.scanned_at)}",
                        device=device,
                        hint="scan this board's own label; the board was not flashed",
                    )
                raise SerialInUse(
                    f"device already has serial number {found.serial} (scanned {local_time(found.scanned_at)}),"
                    f" not {serial}",
                    device=device,
                    hint="scan the label that belongs to this board",
                )
            conn.execute(
                "INSERT INTO serials (serial, device_id, attempt_id, station_id, scanned_at) VALUES (?, ?, ?, ?, ?)",
                (serial, device, attempt_id, actor.station_id, now),
            )
            append_in(
                conn,
                now,
                AuditAction.SCAN,
                station_id=actor.station_id,
                actor=actor.name,
                role=actor.role,
                subject=device,
                after={"serial": serial, "attempt_id": attempt_id},
            )
            return SerialLink(serial, device, attempt_id, actor.station_id, now)

    def serial_of(self, device_id: str) -> str | None:
        with self._registry._reading() as conn:
            row = conn.execute(
                "SELECT serial FROM serials WHERE device_id = ?", (normalize_device_id(device_id),)
            ).fetchone()
        return None if row is None else str(row[0])

    def device_of(self, serial: str) -> SerialLink | None:
        with self._registry._reading() as conn:
            row = conn.execute(
                "SELECT serial, device_id, attempt_id, station_id, scanned_at FROM serials WHERE serial = ?",
                (serial.strip(),),
            ).fetchone()
        return None if row is None else SerialLink(str(row[0]), str(row[1]), row[2], str(row[3]), float(row[4]))

    # -- operators -------------------------------------------------------------------------

    def operators(self) -> list[Operator]:
        with self._registry._reading() as conn:
            rows = conn.execute(
                "SELECT name, role, pin_hash, disabled, created_at, updated_at FROM operators ORDER BY name"
            ).fetchall()
        return [Operator(str(r[0]), str(r[1]), str(r[2]), bool(r[3]), float(r[4]), float(r[5])) for r in rows]

    def operator(self, name: str) -> Operator | None:
        return next((o for o in self.operators() if o.name == name.strip()), None)

    def has_operators(self) -> bool:
        with self._registry._reading() as conn:
            return bool(conn.execute("SELECT count(*) FROM operators WHERE disabled = 0").fetchone()[0])

    def add_operator(self, name: str, role: str, pin_hash: str, *, actor: Actor) -> Operator:
        name = check_operator_name(name)
        with self._registry._writing() as (conn, now):
            if conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise OperatorError(f"operator {name!r} already exists", hint="pick another name")
            conn.execute(
                "INSERT INTO operators (name, role, pin_hash, disabled, created_at, updated_at)"
                " VALUES (?, ?, ?, 0, ?, ?)",
                (name, role, pin_hash, now, now),
            )
            append_in(
                conn,
                now,
                AuditAction.OPERATOR_ADD,
                station_id=actor.station_id,
                actor=actor.name,
                role=actor.role,
                subject=name,
                after={"role": role},
            )
            return Operator(name, role, pin_hash, False, now, now)

    def disable_operator(self, name: str, *, actor: Actor) -> None:
        with self._registry._writing() as (conn, now):
            row = conn.execute("SELECT role, disabled FROM operators WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise OperatorError(f"no operator {name!r}", hint="see `station operators list`")
            if row[1]:
                return
            conn.execute("UPDATE operators SET disabled = 1, updated_at = ? WHERE name = ?", (now, name))
            append_in(
                conn,
                now,
                AuditAction.OPERATOR_DISABLE,
                station_id=actor.station_id,
                actor=actor.name,
                role=actor.role,
                subject=name,
                before={"role": str(row[0]), "disabled": False},
                after={"role": str(row[0]), "disabled": True},
            )

    # -- release floors --------------------------------------------------------------------

    def newest_flashed_version(self, product_id: int) -> int | None:
        """The highest product version this registry has passed a board with, for ``product_id``."""
        with self._registry._reading() as conn:
            row = conn.execute(
                "SELECT max(product_version) FROM attempts WHERE product_id = ? AND result = 'pass'", (product_id,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def security_floor(self, product_id: int) -> int | None:
        with self._registry._reading() as conn:
            row = conn.execute(
                "SELECT security_version FROM security_floor WHERE product_id = ?", (product_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def raise_security_floor(self, product_id: int, security_version: int) -> None:
        """The station will never again accept a bundle of this product below ``security_version``."""
        with self._registry._writing() as (conn, now):
            conn.execute(
                "INSERT INTO security_floor (product_id, security_version, set_at) VALUES (?, ?, ?)"
                " ON CONFLICT (product_id) DO UPDATE SET security_version = excluded.security_version,"
                " set_at = excluded.set_at WHERE excluded.security_version > security_floor.security_version",
                (product_id, security_version, now),
            )

    # -- label queue -----------------------------------------------------------------------

    def queue_label(
        self, device_id: str, *, attempt_id: int | None, payload: str, fields: Mapping[str, str], printer: str | None
    ) -> int:
        """Queue a label; committed before it is sent, so a crash or an offline printer loses none."""
        with self._registry._writing() as (conn, now):
            cursor = conn.execute(
                "INSERT INTO labels (device_id, attempt_id, state, payload, fields, printer, created_at, updated_at)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (normalize_device_id(device_id), attempt_id, payload, json.dumps(dict(fields)), printer, now, now),
            )
            return int(cursor.lastrowid or 0)

    def label_sent(self, label_id: int, *, ok: bool, error: str | None = None) -> None:
        state = LabelState.PRINTED if ok else LabelState.FAILED
        with self._registry._writing() as (conn, now):
            conn.execute(
                "UPDATE labels SET state = ?, tries = tries + 1, last_error = ?, updated_at = ? WHERE id = ?",
                (state.value, None if ok else (error or "")[:500], now, label_id),
            )

    def labels(
        self, *, state: LabelState | None = None, device_id: str | None = None, not_printed: bool = False
    ) -> list[LabelRecord]:
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if not_printed:
            where.append("state != 'printed'")
        if device_id is not None:
            where.append("device_id = ?")
            args.append(normalize_device_id(device_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._registry._reading() as conn:
            rows = conn.execute(
                "SELECT id, device_id, attempt_id, state, payload, fields, printer, tries, last_error,"
                f" created_at, updated_at FROM labels{clause} ORDER BY id",
                args,
            ).fetchall()
        return [
            LabelRecord(
                int(r[0]),
                str(r[1]),
                r[2],
                LabelState(str(r[3])),
                str(r[4]),
                json.loads(str(r[5])),
                r[6],
                int(r[7]),
                r[8],
                float(r[9]),
                float(r[10]),
            )
            for r in rows
        ]
