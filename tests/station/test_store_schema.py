"""Schema migrations: from an empty file, from every older version, and refusing files we cannot read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from station.store import Registry, RegistryCorrupt, schema
from station.store.models import AttemptResult
from station.store.outbox import OutboxState


def _at_version(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, str(path), target=version)
    assert schema.schema_version(conn) == version
    return conn


def _fill_v1(conn: sqlite3.Connection) -> None:
    """What a version-1 station recorded: a device that failed then passed, one that only failed."""
    conn.execute("INSERT INTO sessions VALUES ('s1', 10, 'bench', 100.0, 200.0)")
    # Named columns: later versions add columns (with defaults) to the same tables.
    columns = "(device_id, platform, first_seen, last_seen, last_result, last_attempt_id)"
    conn.execute(f"INSERT INTO devices {columns} VALUES ('aaaa', 'photon', 101.0, 130.0, 'pass', 3)")
    conn.execute(f"INSERT INTO devices {columns} VALUES ('bbbb', 'esp32', 111.0, 115.0, 'fail', 2)")
    rows = [
        (1, "aaaa", 101.0, 105.0, "fail", "timeout"),
        (2, "bbbb", 111.0, 115.0, "fail", "verify-mismatch"),
        (3, "aaaa", 120.0, 130.0, "pass", None),
    ]
    for aid, device, start, end, result, code in rows:
        conn.execute(
            "INSERT INTO attempts (id, session_id, device_id, platform, slot_port, station_id, started_at,"
            " ended_at, result, error_code) VALUES (?, 's1', ?, 'p', '1-1', 'st', ?, ?, ?, ?)",
            (aid, device, start, end, result, code),
        )
    conn.execute("INSERT INTO attempt_images VALUES (3, 0, 'user', 'ff')")
    conn.execute("INSERT INTO attempt_phases VALUES (3, 1, 'write', 121.0, 129.0)")


def _fill_v2(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO outbox (product, device_id, state, enqueued_at, updated_at, tries)"
        " VALUES ('1234', 'aaaa', 'synced', 130.0, 140.0, 1)"
    )


@pytest.mark.parametrize("version", [0, *(m.version for m in schema.MIGRATIONS[:-1])])
def test_migrates_from_each_older_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "station.db"
    if version == 0:
        path.write_bytes(b"")  # an empty file is where every registry starts
    else:
        # The rows are written as the first versions wrote them; later versions migrate them.
        conn = _at_version(path, min(version, 2))
        _fill_v1(conn)
        if version >= 2:
            _fill_v2(conn)
        if version > 2:
            schema.migrate(conn, str(path), target=version)
        conn.close()

    with Registry(path) as registry:
        with registry._reading() as conn:
            assert schema.schema_version(conn) == schema.LATEST_VERSION
        assert registry.check_consistency() == ()
        if version == 0:
            assert registry.history() == []
            return
        history = registry.history()
        assert [(a.id, a.result) for a in history] == [
            (1, AttemptResult.FAIL),
            (2, AttemptResult.FAIL),
            (3, AttemptResult.PASS),
        ]
        assert history[2].context.images[0].sha256 == "ff"
        assert history[2].phases[0].seconds == 8.0
        a = registry.device("aaaa")
        assert a is not None
        assert (a.attempts, a.passed_at, a.last_result) == (2, 130.0, AttemptResult.PASS)
        stats = registry.stats()
        # aaaa failed first, bbbb only failed: no device passed on its first try.
        assert stats.first_pass_yield == 0.0
        assert (stats.devices_passed, stats.devices_failing) == (1, 1)
        counts = registry.outbox.counts()
        assert counts[OutboxState.SYNCED] == (1 if version >= 2 else 0)


def test_fresh_registry_is_at_latest_version_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "station.db"
    Registry(path).close()
    conn = sqlite3.connect(path)
    assert schema.schema_version(conn) == schema.LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_migration_leaves_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "station.db"
    conn = _at_version(path, schema.LATEST_VERSION)
    broken = schema.Migration(schema.LATEST_VERSION + 1, "broken", ("CREATE TABLE half (a)", "NOT SQL AT ALL"))
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, str(path), target=schema.LATEST_VERSION + 1)
    assert schema.schema_version(conn) == schema.LATEST_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(RegistryCorrupt, match="newer than this station knows"):
        Registry(path)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(RegistryCorrupt, match="another program"):
        Registry(path)


def test_a_file_that_is_not_sqlite_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(RegistryCorrupt) as info:
        Registry(path)
    assert "\n" not in str(info.value)
    assert "not a readable registry" in str(info.value)


def test_a_version_3_file_gains_the_unit_serial_tables(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    _at_version(path, 3).close()
    with Registry(path) as registry, registry._reading() as conn:
        assert schema.schema_version(conn) == schema.LATEST_VERSION
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"unit_serials", "unit_counters"} <= tables
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(attempts)")}
        assert {"unit_serial", "unit_data"} <= columns
