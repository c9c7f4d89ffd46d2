"""The device registry: every transition of every attempt committed to SQLite before the line goes on.

WAL with ``synchronous=FULL``: a transition that returned survives ``kill -9`` and a power cut. The
next open marks the attempts a dead process left running as interrupted. One writing connection
behind a lock serves every worker thread of the line; reports read through a second connection, so
a long report never holds up a transition.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from station.errors import Reason
from station.store import reports, unit_serials
from station.store.audit import AuditLog
from station.store.errors import (
    AttemptStateError,
    InvalidRecord,
    RegistryCorrupt,
    RegistryError,
    RegistryMissing,
    RegistryUnavailable,
)
from station.store.ids import normalize_device_id
from station.store.models import (
    AttemptRecord,
    AttemptResult,
    DeviceRecord,
    RunContext,
    Slot,
    Stats,
)
from station.store.outbox import MAX_ERROR_CHARS, Outbox, enqueue_in
from station.store.paths import ensure_parent, unavailable
from station.store.schema import migrate
from station.store.sessions import SessionLock, forget_session, session_alive, sessions_folder
from station.store.trace import Trace

# The JSON of one unit's NVS rows; far more than a few keys need, small enough for every report.
MAX_UNIT_DATA_CHARS = 16384

__all__ = ["Registry", "normalize_device_id"]

MAX_TEXT = 200  # station ids, labels, operators, phase names: bounded so a bad caller cannot bloat rows
INTERRUPTED_MESSAGE = "the station stopped before this attempt ended (crash, power cut or quit)"

Clock = Callable[[], float]


def _text(value: str | None, what: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidRecord(f"{what} must not be empty")
        return None
    if len(value) > MAX_TEXT:
        raise InvalidRecord(f"{what} is longer than {MAX_TEXT} characters: {value[:40]!r}...")
    return value


def _is_sqlite_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "encrypted" in text


class Registry:
    """The registry in one SQLite file. Open it once per process and share it between threads.

    ``create=False`` refuses a missing file (reports should not create an empty registry on a typo).
    Opening runs pending migrations and interrupts the attempts of processes that died.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        clock: Clock = time.time,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._write_lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._session_id: str | None = None
        self._loaded_pools: set[str] = set()  # serial lists loaded by this process
        self._session_lock: SessionLock | None = None
        self._closed = False
        if not create and not self.path.exists():
            raise RegistryMissing(
                f"no registry at {self.path}",
                hint="nothing has been recorded there yet; pass --db or set BENCHFLASH_DB to the station's file",
            )
        ensure_parent(self.path)
        self._reader: sqlite3.Connection | None = None
        self._conn = self._connect()
        try:
            self._setup()
            self.recover_interrupted()
        except BaseException:
            self._conn.close()
            if self._reader is not None:
                self._reader.close()
            raise

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise unavailable(self.path, str(exc)) from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        return conn

    def _setup(self) -> None:
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RegistryUnavailable(
                    f"cannot open the registry {self.path}: the file system refuses write-ahead logging",
                    hint="put the registry on a local disk with --db or BENCHFLASH_DB",
                )
            migrate(self._conn, str(self.path))
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> RegistryError:
        if isinstance(exc, sqlite3.DatabaseError) and _is_sqlite_corrupt(exc):
            return RegistryCorrupt(
                f"{self.path} is not a readable registry: {exc}",
                hint="restore it from a backup, or pass --db with another file",
            )
        text = str(exc).lower()
        if "readonly" in text or "unable to open" in text or "disk i/o" in text:
            return unavailable(self.path, str(exc))
        if "locked" in text or "busy" in text:
            return RegistryError(
                f"registry {self.path} stayed locked by another process for {self._busy_timeout:g} s",
                hint="check for a stuck station process",
                reason=Reason.TIMEOUT,
            )
        if "full" in text:
            return RegistryError(f"registry {self.path}: the disk is full", hint="free some space")
        return RegistryError(f"registry {self.path}: {exc}")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """One write transaction, committed (and synced) before it returns; yields the time it is at."""
        with self._write_lock:
            self._check_open()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            try:
                yield conn, self._clock()
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc) from exc
                raise

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for one report; never waits for the writer (WAL)."""
        with self._read_lock:
            self._check_open()
            if self._reader is None:
                self._reader = self._open_reader()
            conn = self._reader
            try:
                conn.execute("BEGIN")
                yield conn
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    def _open_reader(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryError(f"registry {self.path} is closed")

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Interrupt this process's attempts still running, end its session, close the file."""
        with self._write_lock:
            if self._closed:
                return
            try:
                if self._session_id is not None:
                    self._end_session(self._session_id)
            finally:
                self._closed = True
                if self._session_lock is not None:
                    self._session_lock.release()
                self._conn.close()
                with self._read_lock:
                    if self._reader is not None:
                        self._reader.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def outbox(self) -> Outbox:
        return Outbox(self)

    @property
    def audit(self) -> AuditLog:
        """The hash-chained audit log (station.store.audit)."""
        return AuditLog(self)

    @property
    def trace(self) -> Trace:
        """Serial numbers, operators, the label queue and release floors (station.store.trace)."""
        return Trace(self)

    # -- sessions and recovery ---------------------------------------------------------------

    def _ensure_session(self) -> str:
        """This process's session, created with its lock before the first attempt it records."""
        with self._write_lock:
            if self._session_id is not None:
                return self._session_id
            session_id = uuid.uuid4().hex
            lock = SessionLock(sessions_folder(self.path), session_id)
            try:
                lock.acquire()
            except OSError as exc:
                raise unavailable(self.path, f"cannot create a session lock {lock.path}: {exc}") from exc
            try:
                with self._writing() as (conn, now):
                    conn.execute(
                        "INSERT INTO sessions (id, pid, host, started_at) VALUES (?, ?, ?, ?)",
                        (session_id, os.getpid(), socket.gethostname()[:MAX_TEXT], now),
                    )
            except BaseException:
                lock.release()
                raise
            self._session_id, self._session_lock = session_id, lock
            return session_id

    def _end_session(self, session_id: str) -> list[int]:
        with self._writing() as (conn, now):
            running = [
                int(row[0])
                for row in conn.execute(
                    "SELECT id FROM attempts WHERE session_id = ? AND result = 'running' ORDER BY id",
                    (session_id,),
                )
            ]
            for attempt_id in running:
                self._finish_in(
                    conn, attempt_id, AttemptResult.INTERRUPTED, Reason.INTERRUPTED, INTERRUPTED_MESSAGE, now
                )
            conn.execute("UPDATE sessions SET ended_at = coalesce(ended_at, ?) WHERE id = ?", (now, session_id))
        return running

    def recover_interrupted(self) -> tuple[int, ...]:
        """Mark as interrupted every attempt left running by a process that no longer lives.

        Returns the attempt ids marked. Attempts of live processes (another station, or the line
        while someone runs a report) are left alone.
        """
        folder = sessions_folder(self.path)
        with self._reading() as conn:
            open_sessions = [str(r[0]) for r in conn.execute("SELECT id FROM sessions WHERE ended_at IS NULL")]
        dead = [s for s in open_sessions if s != self._session_id and not session_alive(folder, s)]
        marked: list[int] = []
        for session_id in dead:
            marked.extend(self._end_session(session_id))
            forget_session(folder, session_id)
        return tuple(marked)

    # -- the line's transitions --------------------------------------------------------------

    def start_attempt(self, slot: Slot, context: RunContext) -> int:
        """A board was plugged into ``slot``: record a running attempt and return its id."""
        port = _text(slot.port_path, "slot port path", required=True)
        label = _text(slot.label, "slot label")
        station = _text(context.station_id, "station id", required=True)
        operator = _text(context.operator, "operator")
        bundle_id = _text(context.bundle_id, "bundle id")
        bundle_sha = _text(context.bundle_sha256, "bundle sha256")
        images = [
            (i, _text(img.name, "image name", required=True), _text(img.sha256, "image sha256", required=True))
            for i, img in enumerate(context.images)
        ]
        session = self._ensure_session()
        with self._writing() as (conn, now):
            cursor = conn.execute(
                "INSERT INTO attempts (session_id, slot_port, slot_label, station_id, operator, bundle_id,"
                " bundle_sha256, product_id, product_version, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session,
                    port,
                    label,
                    station,
                    operator,
                    bundle_id,
                    bundle_sha,
                    context.product_id,
                    context.product_version,
                    now,
                ),
            )
            attempt_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO attempt_images (attempt_id, position, name, sha256) VALUES (?, ?, ?, ?)",
                [(attempt_id, pos, name, sha) for pos, name, sha in images],
            )
        return attempt_id

    def record_phase(self, attempt_id: int, phase: str) -> None:
        """The attempt enters ``phase`` now; the phase it was in ends now (time per phase)."""
        name = _text(str(phase), "phase", required=True)
        with self._writing() as (conn, now):
            self._running(conn, attempt_id)
            conn.execute(
                "UPDATE attempt_phases SET ended_at = ? WHERE attempt_id = ? AND ended_at IS NULL",
                (now, attempt_id),
            )
            conn.execute(
                "INSERT INTO attempt_phases (attempt_id, seq, phase, started_at) VALUES (?,"
                " (SELECT coalesce(max(seq), 0) + 1 FROM attempt_phases WHERE attempt_id = ?), ?, ?)",
                (attempt_id, attempt_id, name, now),
            )
            conn.execute("UPDATE attempts SET phase = ? WHERE id = ?", (name, attempt_id))

    def identify(self, attempt_id: int, device_id: str, platform: str) -> str:
        """The attempt's board said who it is; returns the ID as recorded (trimmed, lower case)."""
        device = normalize_device_id(device_id)
        plat = _text(platform, "platform", required=True)
        with self._writing() as (conn, now):
            known, _ = self._running(conn, attempt_id)
            if known == device:
                return device
            if known is not None:
                raise AttemptStateError(
                    f"attempt {attempt_id} already belongs to device {known}, not {device}",
                    hint="start a new attempt for another board",
                )
            conn.execute(
                "INSERT INTO devices (device_id, platform, first_seen, last_seen, last_result,"
                " last_attempt_id, attempts) VALUES (?, ?, ?, ?, 'running', ?, 1)"
                " ON CONFLICT (device_id) DO UPDATE SET platform = excluded.platform,"
                " last_seen = excluded.last_seen, last_result = 'running',"
                " last_attempt_id = excluded.last_attempt_id, attempts = attempts + 1",
                (device, plat, now, now, attempt_id),
            )
            conn.execute("UPDATE attempts SET device_id = ?, platform = ? WHERE id = ?", (device, plat, attempt_id))
        return device

    def finish_attempt(
        self,
        attempt_id: int,
        result: AttemptResult | str,
        error_code: str | None = None,
        error_message: str | None = None,
        *,
        enqueue_product: str | None = None,
        group: str | None = None,
    ) -> None:
        """End the attempt as pass, fail or interrupted, in one transaction.

        A PASS with ``enqueue_product`` queues the device for import into that product in the same
        transaction, so a PASS is never recorded without its import or the other way round.
        """
        final = AttemptResult(result)
        if final is AttemptResult.RUNNING:
            raise AttemptStateError(f"attempt {attempt_id}: 'running' is not a way to finish")
        if final is AttemptResult.PASS and (error_code or error_message):
            raise AttemptStateError(f"attempt {attempt_id}: a PASS carries no error")
        if final is AttemptResult.INTERRUPTED and error_code is None:
            error_code = Reason.INTERRUPTED
        with self._writing() as (conn, now):
            device, _ = self._running(conn, attempt_id)
            if final is AttemptResult.PASS and device is None:
                raise AttemptStateError(
                    f"attempt {attempt_id}: a PASS needs the device's ID", hint="call identify() first"
                )
            self._finish_in(conn, attempt_id, final, error_code, error_message, now)
            if final is AttemptResult.PASS and enqueue_product is not None and device is not None:
                enqueue_in(conn, device, enqueue_product, group, now)

    def _running(self, conn: sqlite3.Connection, attempt_id: int) -> tuple[str | None, str]:
        row = conn.execute("SELECT device_id, result FROM attempts WHERE id = ?", (int(attempt_id),)).fetchone()
        if row is None:
            raise AttemptStateError(f"no attempt {attempt_id} in the registry")
        if row[1] != AttemptResult.RUNNING.value:
            raise AttemptStateError(f"attempt {attempt_id} has already ended as {row[1]}")
        return (None if row[0] is None else str(row[0])), str(row[1])

    def _finish_in(
        self,
        conn: sqlite3.Connection,
        attempt_id: int,
        result: AttemptResult,
        error_code: str | None,
        error_message: str | None,
        now: float,
    ) -> None:
        code = _text(None if error_code is None else str(error_code), "error code")
        message = None if error_message is None else error_message[:MAX_ERROR_CHARS]
        conn.execute(
            "UPDATE attempts SET result = ?, ended_at = ?, error_code = ?, error_message = ? WHERE id = ?",
            (result.value, now, code, message, attempt_id),
        )
        conn.execute(
            "UPDATE attempt_phases SET ended_at = ? WHERE attempt_id = ? AND ended_at IS NULL", (now, attempt_id)
        )
        # The device's summary: its last result only if no newer attempt has started on it since;
        # the first finished pass/fail for first-pass yield; when it first passed.
        decided = result in (AttemptResult.PASS, AttemptResult.FAIL)
        conn.execute(
            "UPDATE devices SET last_seen = max(last_seen, :now),"
            " last_result = CASE WHEN last_attempt_id = :id THEN :result ELSE last_result END,"
            " first_result = CASE WHEN first_result IS NULL AND :decided THEN :result ELSE first_result END,"
            " first_result_at = CASE WHEN first_result IS NULL AND :decided THEN :now ELSE first_result_at END,"
            " passed_at = CASE WHEN :result = 'pass' THEN coalesce(passed_at, :now) ELSE passed_at END"
            " WHERE device_id = (SELECT device_id FROM attempts WHERE id = :id)",
            {"now": now, "id": attempt_id, "result": result.value, "decided": int(decided)},
        )
        unit_serials.settle_in(conn, attempt_id, result.value, code, now)

    # -- per-unit serial numbers (issue 13) -----------------------------------------------------

    def reserve_unit_serial(self, attempt_id: int, source: unit_serials.SerialSource) -> str:
        """Reserve the next serial number of ``source`` for this running attempt; committed on return,
        before anything is written to the board."""
        with self._writing() as (conn, now):
            self._running(conn, attempt_id)
            if source.serials is not None and source.pool not in self._loaded_pools:
                unit_serials.load_list(conn, source, now)
            serial = unit_serials.reserve_in(conn, attempt_id, source, now)
        self._loaded_pools.add(source.pool)
        return serial

    def record_unit_data(self, attempt_id: int, unit_data: str) -> None:
        """The unit data (JSON) written to the board and read back, kept with the attempt."""
        if len(unit_data) > MAX_UNIT_DATA_CHARS:
            raise AttemptStateError(f"attempt {attempt_id}: unit data of {len(unit_data)} characters is too long")
        with self._writing() as (conn, _now):
            self._running(conn, attempt_id)
            conn.execute("UPDATE attempts SET unit_data = ? WHERE id = ?", (unit_data, attempt_id))

    def unit_serials(self, pool: str | None = None) -> list[unit_serials.UnitSerial]:
        with self._reading() as conn:
            return unit_serials.serials_in(conn, pool)

    # -- reading -----------------------------------------------------------------------------

    def attempt(self, attempt_id: int) -> AttemptRecord:
        with self._reading() as conn:
            found = reports.attempts_by_id(conn, [attempt_id])
        if not found:
            raise AttemptStateError(f"no attempt {attempt_id} in the registry")
        return found[0]

    def device(self, device_id: str) -> DeviceRecord | None:
        with self._reading() as conn:
            return reports.device(conn, normalize_device_id(device_id))

    def history(
        self, *, device_id: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[AttemptRecord]:
        """Attempts oldest first; with ``limit``, the latest ``limit`` of them."""
        device = None if device_id is None else normalize_device_id(device_id)
        with self._reading() as conn:
            return reports.history(conn, device_id=device, since=since, limit=limit)

    def count_attempts(self, *, device_id: str | None = None, since: float | None = None) -> int:
        device = None if device_id is None else normalize_device_id(device_id)
        with self._reading() as conn:
            return reports.count_attempts(conn, device_id=device, since=since)

    def stats(self, *, since: float | None = None) -> Stats:
        with self._reading() as conn:
            return reports.stats(conn, since=since)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own holding one read snapshot, for streaming long listings without
        holding up other reports of this registry."""
        self._check_open()
        conn = self._open_reader()
        try:
            conn.execute("BEGIN")
            yield conn
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    def iter_devices(self, *, passed_only: bool = False, chunk: int = 5000) -> Iterator[DeviceRecord]:
        """Every device (or every device that ever passed), ordered by ID, from one snapshot."""
        with self._snapshot() as conn:
            yield from reports.iter_devices(conn, passed_only=passed_only, chunk=chunk)

    def iter_passed_ids(self, *, chunk: int = 20000) -> Iterator[str]:
        """The ID of every device that ever passed, each once, ordered: the console's import list."""
        with self._snapshot() as conn:
            yield from reports.iter_passed_ids(conn, chunk=chunk)

    def iter_export_rows(self, *, passed_only: bool, chunk: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Devices as rows of ``reports.EXPORT_COLUMNS`` (times in unix seconds), ordered by ID."""
        with self._snapshot() as conn:
            yield from reports.iter_export_rows(conn, passed_only=passed_only, chunk=chunk)

    def check_consistency(self) -> tuple[str, ...]:
        """Problems a crash must never leave behind; empty when the registry is sound."""
        with self._reading() as conn:
            return reports.consistency_problems(conn)

    @property
    def session_id(self) -> str | None:
        return self._session_id
