"""The registry's tables and their versioned migrations (``PRAGMA user_version``).

Each migration runs in one transaction together with the version bump, so a crash mid-migration
leaves the previous version intact. Version 1 holds devices and attempts, version 2 adds the sync
outbox, version 3 adds the per-device summary columns and the indexes that keep reports over a
million devices in seconds. Version 6 adds traceability: serial numbers linked to device IDs,
operators, the hash-chained audit log and its signed heads, the unit-label queue and the
per-product security floor. Version 8 adds the running totals (``station.store.summary``) that make
all-time stats independent of the registry's size.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from station.store import summary
from station.store.errors import RegistryCorrupt

RESULTS_SQL = "('running', 'pass', 'fail', 'interrupted')"
OUTBOX_STATES_SQL = "('pending', 'synced', 'invalid', 'needs-attention', 'protected')"


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "devices, attempts with their images and phase timings, writer sessions",
        (
            # One row per process that recorded attempts; its lock file says whether it still lives.
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                pid INTEGER NOT NULL,
                host TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL
            ) WITHOUT ROWID""",
            f"""CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                first_seen REAL NOT NULL,
                last_seen REAL NOT NULL,
                last_result TEXT CHECK (last_result IN {RESULTS_SQL}),
                last_attempt_id INTEGER
            ) WITHOUT ROWID""",
            f"""CREATE TABLE attempts (
                id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions(id),
                device_id TEXT REFERENCES devices(device_id),
                platform TEXT,
                slot_port TEXT NOT NULL,
                slot_label TEXT,
                station_id TEXT NOT NULL,
                operator TEXT,
                bundle_id TEXT,
                bundle_sha256 TEXT,
                product_id INTEGER,
                product_version INTEGER,
                started_at REAL NOT NULL,
                ended_at REAL,
                phase TEXT,
                result TEXT NOT NULL DEFAULT 'running' CHECK (result IN {RESULTS_SQL}),
                error_code TEXT,
                error_message TEXT
            )""",
            "CREATE INDEX attempts_running ON attempts(session_id) WHERE result = 'running'",
            "CREATE INDEX attempts_device ON attempts(device_id, id)",
            """CREATE TABLE attempt_images (
                attempt_id INTEGER NOT NULL REFERENCES attempts(id),
                position INTEGER NOT NULL,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                PRIMARY KEY (attempt_id, position)
            ) WITHOUT ROWID""",
            """CREATE TABLE attempt_phases (
                attempt_id INTEGER NOT NULL REFERENCES attempts(id),
                seq INTEGER NOT NULL,
                phase TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                PRIMARY KEY (attempt_id, seq)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "sync outbox: one row per device and product, with its import state",
        (
            # No foreign key to devices: the sync worker may be handed IDs recorded elsewhere.
            f"""CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                product TEXT NOT NULL,
                device_id TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {OUTBOX_STATES_SQL}),
                device_group TEXT,
                enqueued_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                tries INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                UNIQUE (product, device_id)
            )""",
            "CREATE INDEX outbox_pending ON outbox(product, id) WHERE state = 'pending'",
            "CREATE INDEX outbox_state ON outbox(state, product)",
        ),
    ),
    Migration(
        3,
        "per-device summary (attempt count, first result, first pass) and report indexes",
        (
            "ALTER TABLE devices ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE devices ADD COLUMN first_result TEXT",
            "ALTER TABLE devices ADD COLUMN first_result_at REAL",
            "ALTER TABLE devices ADD COLUMN passed_at REAL",
            """UPDATE devices SET
                attempts = (SELECT count(*) FROM attempts a WHERE a.device_id = devices.device_id),
                first_result = (
                    SELECT a.result FROM attempts a
                    WHERE a.device_id = devices.device_id AND a.result IN ('pass', 'fail')
                    ORDER BY a.ended_at, a.id LIMIT 1),
                first_result_at = (
                    SELECT a.ended_at FROM attempts a
                    WHERE a.device_id = devices.device_id AND a.result IN ('pass', 'fail')
                    ORDER BY a.ended_at, a.id LIMIT 1),
                passed_at = (
                    SELECT min(a.ended_at) FROM attempts a
                    WHERE a.device_id = devices.device_id AND a.result = 'pass')""",
            "CREATE INDEX attempts_started ON attempts(started_at)",
            "CREATE INDEX attempts_failures ON attempts(result, error_code)",
            "CREATE INDEX attempts_line ON attempts(station_id, product_id, product_version, result)",
            "CREATE INDEX devices_first_result ON devices(first_result_at, first_result)",
        ),
    ),
    # Version 5 (issue 13; only adds): per-unit serial numbers and the NVS data written with each attempt.
    Migration(
        5,
        "per-unit serial numbers (counter or list, reserved before the write) and unit data per attempt",
        (
            # A serial is 'free' (a list's unused number, or one a failed board gave back), 'reserved'
            # by a running attempt, 'used' by a PASS, or 'lost' (its attempt was interrupted: the board
            # may hold it, so it is never handed out again).
            """CREATE TABLE unit_serials (
                serial TEXT PRIMARY KEY,
                pool TEXT NOT NULL,
                ordinal INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('free', 'reserved', 'used', 'lost')),
                attempt_id INTEGER REFERENCES attempts(id),
                updated_at REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX unit_serials_free ON unit_serials(pool, ordinal) WHERE state = 'free'",
            "CREATE UNIQUE INDEX unit_serials_attempt ON unit_serials(attempt_id) WHERE state IN ('reserved', 'used')",
            """CREATE TABLE unit_counters (
                pool TEXT PRIMARY KEY,
                next_value INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "ALTER TABLE attempts ADD COLUMN unit_serial TEXT",
            "ALTER TABLE attempts ADD COLUMN unit_data TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "traceability: serial numbers, operators, audit chain and signed heads, label queue, security floor",
        (
            # Unique both ways: one sticker per board, one board per sticker.
            """CREATE TABLE serials (
                serial TEXT PRIMARY KEY,
                device_id TEXT NOT NULL UNIQUE,
                attempt_id INTEGER,
                station_id TEXT NOT NULL,
                scanned_at REAL NOT NULL
            )""",
            """CREATE TABLE operators (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL CHECK (role IN ('operator', 'lead', 'admin')),
                pin_hash TEXT NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            # seq is assigned by the chain (max + 1), never by SQLite, so a deleted row leaves a gap.
            """CREATE TABLE audit (
                seq INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                station_id TEXT NOT NULL,
                actor TEXT NOT NULL,
                role TEXT NOT NULL,
                action TEXT NOT NULL,
                subject TEXT,
                before TEXT,
                after TEXT,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            "CREATE INDEX audit_at ON audit(at)",
            """CREATE TABLE audit_heads (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL,
                station_id TEXT NOT NULL,
                public_key TEXT NOT NULL,
                signature TEXT NOT NULL,
                signed_at REAL NOT NULL
            )""",
            """CREATE TABLE labels (
                id INTEGER PRIMARY KEY,
                device_id TEXT NOT NULL,
                attempt_id INTEGER,
                state TEXT NOT NULL CHECK (state IN ('queued', 'printed', 'failed')),
                payload TEXT NOT NULL,
                fields TEXT NOT NULL,
                printer TEXT,
                tries INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )""",
            "CREATE INDEX labels_state ON labels(state, id)",
            "CREATE INDEX labels_device ON labels(device_id, id)",
            """CREATE TABLE security_floor (
                product_id INTEGER PRIMARY KEY,
                security_version INTEGER NOT NULL,
                set_at REAL NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "running totals for station stats, kept by triggers in each write's own transaction",
        summary.STATEMENTS,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_known(conn: sqlite3.Connection, where: str) -> int:
    version = schema_version(conn)
    if version > LATEST_VERSION:
        raise RegistryCorrupt(
            f"{where}: registry schema version {version} is newer than this station knows ({LATEST_VERSION})",
            hint="upgrade benchflash, or pass --db with another file",
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise RegistryCorrupt(
                f"{where}: an SQLite file of another program, not a benchflash registry",
                hint="pass --db with another file",
            )
    return version


def migrate(conn: sqlite3.Connection, where: str, target: int = LATEST_VERSION) -> int:
    """Bring the schema to ``target``, one transaction per version; returns the version found.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe when several processes
    open an old file at once: each step re-reads the version under the write lock.
    """
    found = _check_known(conn, where)
    if found >= target:
        return found  # the usual case: no write lock taken just to look
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _check_known(conn, where)
            step = next((m for m in MIGRATIONS if m.version > current), None)
            if current >= target or step is None or step.version > target:
                conn.execute("COMMIT")
                return found
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
