"""The registry's read side: history, stats, device listings and the consistency check, as SQL.

Each function takes a connection already inside a read transaction, so what it returns is one
consistent snapshot. The indexes of schema version 3 keep every query here to index scans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from station.store import summary
from station.store.models import (
    AttemptRecord,
    AttemptResult,
    DeviceRecord,
    ImageDigest,
    LineCount,
    PhaseTiming,
    ReasonCount,
    RunContext,
    Slot,
    Stats,
)

_ATTEMPT_COLUMNS = (
    "id, device_id, platform, slot_port, slot_label, station_id, operator, bundle_id, bundle_sha256,"
    " product_id, product_version, started_at, ended_at, result, phase, error_code, error_message,"
    " unit_serial, unit_data"
)
_CHUNK = 500  # ids per IN (...) list, well under SQLite's limit on bound parameters


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _children(
    conn: sqlite3.Connection, ids: Sequence[int]
) -> tuple[dict[int, list[PhaseTiming]], dict[int, list[ImageDigest]]]:
    phases: dict[int, list[PhaseTiming]] = {}
    images: dict[int, list[ImageDigest]] = {}
    for start in range(0, len(ids), _CHUNK):
        part = list(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(part))
        for attempt_id, phase, started, ended in conn.execute(
            f"SELECT attempt_id, phase, started_at, ended_at FROM attempt_phases"
            f" WHERE attempt_id IN ({marks}) ORDER BY attempt_id, seq",
            part,
        ):
            phases.setdefault(int(attempt_id), []).append(PhaseTiming(str(phase), float(started), _opt_float(ended)))
        for attempt_id, name, sha in conn.execute(
            f"SELECT attempt_id, name, sha256 FROM attempt_images"
            f" WHERE attempt_id IN ({marks}) ORDER BY attempt_id, position",
            part,
        ):
            images.setdefault(int(attempt_id), []).append(ImageDigest(str(name), str(sha)))
    return phases, images


def _records(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[AttemptRecord]:
    ids = [int(row[0]) for row in rows]
    phases, images = _children(conn, ids)
    records = []
    for row in rows:
        (aid, device, platform, port, label, station, operator, bundle, bundle_sha, pid, pver, started, ended,
         result, phase, code, message, serial, unit_data) = row  # fmt: skip
        attempt_id = int(aid)
        records.append(
            AttemptRecord(
                id=attempt_id,
                device_id=_opt_str(device),
                platform=_opt_str(platform),
                slot=Slot(str(port), _opt_str(label)),
                context=RunContext(
                    station_id=str(station),
                    operator=_opt_str(operator),
                    bundle_id=_opt_str(bundle),
                    bundle_sha256=_opt_str(bundle_sha),
                    product_id=_opt_int(pid),
                    product_version=_opt_int(pver),
                    images=tuple(images.get(attempt_id, ())),
                ),
                started_at=float(started),
                ended_at=_opt_float(ended),
                result=AttemptResult(str(result)),
                phase=_opt_str(phase),
                error_code=_opt_str(code),
                error_message=_opt_str(message),
                phases=tuple(phases.get(attempt_id, ())),
                unit_serial=_opt_str(serial),
                unit_data=_opt_str(unit_data),
            )
        )
    return records


def attempts_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> list[AttemptRecord]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE id IN ({marks}) ORDER BY id", list(ids)
    ).fetchall()
    return _records(conn, rows)


def _filters(device_id: str | None, since: float | None) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    if device_id is not None:
        where.append("device_id = ?")
        params.append(device_id)
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def history(
    conn: sqlite3.Connection, *, device_id: str | None, since: float | None, limit: int | None
) -> list[AttemptRecord]:
    clause, params = _filters(device_id, since)
    sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts{clause} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, limit))
    rows = conn.execute(sql, params).fetchall()
    rows.reverse()
    return _records(conn, rows)


def count_attempts(conn: sqlite3.Connection, *, device_id: str | None, since: float | None) -> int:
    clause, params = _filters(device_id, since)
    return int(conn.execute(f"SELECT count(*) FROM attempts{clause}", params).fetchone()[0])


def _device(row: tuple[Any, ...]) -> DeviceRecord:
    device, platform, first_seen, last_seen, attempts, last_result, last_code, passed_at = row
    return DeviceRecord(
        device_id=str(device),
        platform=str(platform),
        first_seen=float(first_seen),
        last_seen=float(last_seen),
        attempts=int(attempts),
        last_result=None if last_result is None else AttemptResult(str(last_result)),
        last_error_code=_opt_str(last_code),
        passed_at=_opt_float(passed_at),
    )


_DEVICE_SELECT = (
    "SELECT d.device_id, d.platform, d.first_seen, d.last_seen, d.attempts, d.last_result,"
    " a.error_code, d.passed_at FROM devices d LEFT JOIN attempts a ON a.id = d.last_attempt_id"
)


def device(conn: sqlite3.Connection, device_id: str) -> DeviceRecord | None:
    row = conn.execute(f"{_DEVICE_SELECT} WHERE d.device_id = ?", (device_id,)).fetchone()
    return None if row is None else _device(row)


def iter_devices(conn: sqlite3.Connection, *, passed_only: bool, chunk: int) -> Iterator[DeviceRecord]:
    where = " WHERE d.passed_at IS NOT NULL" if passed_only else ""
    cursor = conn.execute(f"{_DEVICE_SELECT}{where} ORDER BY d.device_id")
    while rows := cursor.fetchmany(chunk):
        for row in rows:
            yield _device(row)


def iter_passed_ids(conn: sqlite3.Connection, *, chunk: int) -> Iterator[str]:
    cursor = conn.execute("SELECT device_id FROM devices WHERE passed_at IS NOT NULL ORDER BY device_id")
    while rows := cursor.fetchmany(chunk):
        for (device_id,) in rows:
            yield str(device_id)


EXPORT_COLUMNS = (
    "device_id",
    "platform",
    "first_seen",
    "last_seen",
    "attempts",
    "last_result",
    "last_error_code",
    "passed_at",
)


def iter_export_rows(conn: sqlite3.Connection, *, passed_only: bool, chunk: int) -> Iterator[tuple[Any, ...]]:
    """Rows of ``EXPORT_COLUMNS``, times as unix seconds. The last error code is looked up only for
    devices whose last attempt failed, which saves a random read per passed device."""
    where = " WHERE d.passed_at IS NOT NULL" if passed_only else ""
    cursor = conn.execute(
        "SELECT d.device_id, d.platform, d.first_seen, d.last_seen, d.attempts, d.last_result,"
        " CASE WHEN d.last_result IN ('fail', 'interrupted')"
        " THEN (SELECT a.error_code FROM attempts a WHERE a.id = d.last_attempt_id) END,"
        f" d.passed_at FROM devices d{where} ORDER BY d.device_id"
    )
    while rows := cursor.fetchmany(chunk):
        yield from rows


def _line_totals(conn: sqlite3.Connection) -> tuple[list[LineCount], float | None, float | None]:
    """All-time counts per station and product version, from the running totals (``summary``)."""
    lines: list[LineCount] = []
    first: float | None = None
    last: float | None = None
    for station, pid, pver, total, passed, failed, interrupted, started, event in conn.execute(
        "SELECT station_id, product_id, product_version, attempts, passed, failed, interrupted,"
        " first_started, last_event FROM summary_lines WHERE attempts > 0"
        " ORDER BY station_id, product_id, product_version"
    ):
        lines.append(
            LineCount(
                station_id=str(station),
                product_id=None if pid == summary.NO_PRODUCT else int(pid),
                product_version=None if pver == summary.NO_PRODUCT else int(pver),
                attempts=int(total),
                passed=int(passed),
                failed=int(failed),
                interrupted=int(interrupted),
            )
        )
        first = float(started) if first is None else min(first, float(started))
        last = float(event) if last is None else max(last, float(event))
    return lines, first, last


def _window_lines(conn: sqlite3.Connection, since: float) -> tuple[list[LineCount], float | None, float | None]:
    # Over a window, read only its rows: left alone, SQLite would rather walk a grouping index
    # through every attempt ever recorded than sort the few thousand of a shift.
    lines = [
        LineCount(
            station_id=str(station),
            product_id=_opt_int(pid),
            product_version=_opt_int(pver),
            attempts=int(total),
            passed=int(passed),
            failed=int(failed),
            interrupted=int(interrupted),
        )
        for station, pid, pver, total, passed, failed, interrupted in conn.execute(
            "SELECT station_id, product_id, product_version, count(*), sum(result = 'pass'),"
            " sum(result = 'fail'), sum(result = 'interrupted') FROM attempts INDEXED BY attempts_started"
            " WHERE started_at >= ? GROUP BY station_id, product_id, product_version"
            " ORDER BY station_id, product_id, product_version",
            (since,),
        )
    ]
    first, last = conn.execute(
        "SELECT min(started_at), max(coalesce(ended_at, started_at)) FROM attempts WHERE started_at >= ?", (since,)
    ).fetchone()
    return lines, _opt_float(first), _opt_float(last)


def stats(conn: sqlite3.Connection, *, since: float | None) -> Stats:
    if since is None:
        lines, first_started, last_event = _line_totals(conn)
        seen, devices_passed, failing, tested, first_pass = conn.execute(
            "SELECT seen, passed, failing, tested, first_pass FROM summary_devices WHERE id = 1"
        ).fetchone()
        reason_rows = conn.execute(
            "SELECT code, failures FROM summary_reasons WHERE failures > 0 ORDER BY failures DESC, code"
        ).fetchall()
    else:
        lines, first_started, last_event = _window_lines(conn, since)
        seen, devices_passed, failing = conn.execute(
            "SELECT count(*), coalesce(sum(p > 0), 0), coalesce(sum(p = 0 AND f > 0), 0) FROM ("
            " SELECT sum(result = 'pass') AS p, sum(result = 'fail') AS f FROM attempts INDEXED BY attempts_started"
            " WHERE started_at >= ? AND device_id IS NOT NULL GROUP BY device_id)",
            (since,),
        ).fetchone()
        tested, first_pass = conn.execute(
            "SELECT count(*), coalesce(sum(first_result = 'pass'), 0) FROM devices WHERE first_result_at >= ?",
            (since,),
        ).fetchone()
        reason_rows = conn.execute(
            "SELECT coalesce(error_code, 'unknown') AS code, count(*) AS n FROM attempts"
            " WHERE result = 'fail' AND started_at >= ? GROUP BY code ORDER BY n DESC, code",
            (since,),
        ).fetchall()
    attempts = sum(line.attempts for line in lines)
    passed = sum(line.passed for line in lines)
    failed = sum(line.failed for line in lines)
    interrupted = sum(line.interrupted for line in lines)
    reasons = tuple(ReasonCount(str(code), int(count)) for code, count in reason_rows)
    span = None if first_started is None or last_event is None else last_event - first_started
    per_hour = None if not span or span <= 0 else int(devices_passed) * 3600.0 / span
    return Stats(
        since=since,
        attempts=attempts,
        attempts_passed=passed,
        attempts_failed=failed,
        attempts_interrupted=interrupted,
        attempts_running=attempts - passed - failed - interrupted,
        devices_seen=int(seen),
        devices_passed=int(devices_passed),
        devices_failing=int(failing),
        first_pass_yield=(int(first_pass) / int(tested)) if tested else None,
        devices_per_hour=per_hour,
        first_started_at=first_started,
        last_event_at=last_event,
        failures_by_reason=reasons,
        by_line=tuple(lines),
    )


def consistency_problems(conn: sqlite3.Connection) -> tuple[str, ...]:
    problems: list[str] = []
    check = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
    if check != ["ok"]:
        problems.extend(f"sqlite: {line}" for line in check)
    checks = (
        (
            "attempt {} is still running although its station process has ended",
            "SELECT a.id FROM attempts a JOIN sessions s ON s.id = a.session_id"
            " WHERE a.result = 'running' AND s.ended_at IS NOT NULL",
        ),
        (
            "attempt {} passed without a device ID",
            "SELECT id FROM attempts WHERE result = 'pass' AND device_id IS NULL",
        ),
        (
            "attempt {} has ended but left a phase open",
            "SELECT DISTINCT p.attempt_id FROM attempt_phases p JOIN attempts a ON a.id = p.attempt_id"
            " WHERE p.ended_at IS NULL AND a.result != 'running'",
        ),
        (
            "device {} disagrees with its attempts about having passed",
            "SELECT d.device_id FROM devices d WHERE (d.passed_at IS NOT NULL) !="
            " EXISTS (SELECT 1 FROM attempts a WHERE a.device_id = d.device_id AND a.result = 'pass')",
        ),
        (
            "device {} counts a different number of attempts than recorded",
            "SELECT d.device_id FROM devices d WHERE d.attempts !="
            " (SELECT count(*) FROM attempts a WHERE a.device_id = d.device_id)",
        ),
        (
            "device {} is queued for import but never passed",
            "SELECT DISTINCT o.device_id FROM outbox o JOIN devices d ON d.device_id = o.device_id"
            " WHERE d.passed_at IS NULL",
        ),
    )
    for text, sql in checks:
        problems.extend(text.format(row[0]) for row in conn.execute(sql))
    problems.extend(_summary_problems(conn))
    return tuple(problems)


def _summary_problems(conn: sqlite3.Connection) -> list[str]:
    """The running totals against a full scan of what they count (the scan stats used to do)."""
    scanned_lines = {
        (str(s), int(p), int(v)): (int(n), int(ok), int(bad), int(intr))
        for s, p, v, n, ok, bad, intr in conn.execute(
            "SELECT ifnull(station_id, ''), ifnull(product_id, -1), ifnull(product_version, -1), count(*),"
            " sum(result = 'pass'), sum(result = 'fail'), sum(result = 'interrupted') FROM attempts GROUP BY 1, 2, 3"
        )
    }
    kept_lines = {
        (str(s), int(p), int(v)): (int(n), int(ok), int(bad), int(intr))
        for s, p, v, n, ok, bad, intr in conn.execute(
            "SELECT station_id, product_id, product_version, attempts, passed, failed, interrupted"
            " FROM summary_lines WHERE attempts != 0 OR passed != 0 OR failed != 0 OR interrupted != 0"
        )
    }
    problems = [
        f"running totals of station {key[0]!r} product {key[1]} v{key[2]} disagree with its attempts"
        for key in sorted(set(scanned_lines) | set(kept_lines))
        if scanned_lines.get(key) != kept_lines.get(key)
    ]
    scanned_reasons = dict(
        conn.execute("SELECT coalesce(error_code, 'unknown'), count(*) FROM attempts WHERE result = 'fail' GROUP BY 1")
    )
    kept_reasons = dict(conn.execute("SELECT code, failures FROM summary_reasons WHERE failures != 0"))
    if scanned_reasons != kept_reasons:
        problems.append("running totals of failure reasons disagree with the attempts")
    scanned_devices = conn.execute(
        "SELECT count(*), count(passed_at), coalesce(sum(passed_at IS NULL AND last_result = 'fail'), 0),"
        " count(first_result_at), coalesce(sum(first_result_at IS NOT NULL AND first_result = 'pass'), 0)"
        " FROM devices"
    ).fetchone()
    kept_devices = conn.execute(
        "SELECT seen, passed, failing, tested, first_pass FROM summary_devices WHERE id = 1"
    ).fetchone()
    if tuple(scanned_devices) != (None if kept_devices is None else tuple(kept_devices)):
        problems.append("running totals of devices disagree with the devices table")
    return problems
