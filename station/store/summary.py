"""The registry's running totals, kept by triggers in the same transaction as every write they count.

``station stats`` over all time reads these few rows instead of scanning every attempt and device, so
its cost does not grow with the registry. Triggers (not the writer's code) keep them, so every path
that writes attempts or devices — the line, crash recovery, a bulk import, a migration — counts alike.
Each trigger takes out a row's old contribution and adds its new one. The first start and the last
event only ever move outward (rows are never deleted by the station); the count consistency check in
``reports.consistency_problems`` compares them with a full scan.
"""

from __future__ import annotations

# NULL product fields are stored as -1 here: a NULL inside a primary key never matches itself,
# so an upsert could not find the row of a line with no product.
NO_PRODUCT = -1

_LINE_KEY = "ifnull({r}.station_id, ''), ifnull({r}.product_id, -1), ifnull({r}.product_version, -1)"


def _line_delta(row: str, sign: int) -> str:
    key = _LINE_KEY.format(r=row)
    s = "+" if sign > 0 else "-"
    return (
        "INSERT INTO summary_lines (station_id, product_id, product_version, attempts, passed, failed,"
        f" interrupted, first_started, last_event) VALUES ({key}, {s}1, {s}({row}.result = 'pass'),"
        f" {s}({row}.result = 'fail'), {s}({row}.result = 'interrupted'), {row}.started_at,"
        f" coalesce({row}.ended_at, {row}.started_at))"
        " ON CONFLICT (station_id, product_id, product_version) DO UPDATE SET"
        " attempts = attempts + excluded.attempts, passed = passed + excluded.passed,"
        " failed = failed + excluded.failed, interrupted = interrupted + excluded.interrupted,"
        " first_started = min(first_started, excluded.first_started),"
        " last_event = max(last_event, excluded.last_event);"
    )


def _reason_delta(row: str, sign: int) -> str:
    s = "+" if sign > 0 else "-"
    return (
        f"INSERT INTO summary_reasons (code, failures) SELECT coalesce({row}.error_code, 'unknown'), {s}1"
        f" WHERE {row}.result = 'fail'"
        " ON CONFLICT (code) DO UPDATE SET failures = failures + excluded.failures;"
    )


def _device_delta(row: str, sign: int) -> str:
    s = "+" if sign > 0 else "-"
    return (
        f"UPDATE summary_devices SET seen = seen {s} 1,"
        f" passed = passed {s} ({row}.passed_at IS NOT NULL),"
        f" failing = failing {s} ({row}.passed_at IS NULL AND {row}.last_result = 'fail'),"
        f" tested = tested {s} ({row}.first_result_at IS NOT NULL),"
        f" first_pass = first_pass {s} ({row}.first_result_at IS NOT NULL AND {row}.first_result = 'pass')"
        " WHERE id = 1;"
    )


# Only the columns the totals depend on fire the update triggers: the per-transition phase update
# of a running attempt stays as cheap as it was.
_ATTEMPT_COLUMNS = "result, error_code, station_id, product_id, product_version, started_at, ended_at"
_DEVICE_COLUMNS = "passed_at, last_result, first_result, first_result_at"

STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE summary_lines (
        station_id TEXT NOT NULL,
        product_id INTEGER NOT NULL,
        product_version INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        passed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        interrupted INTEGER NOT NULL,
        first_started REAL NOT NULL,
        last_event REAL NOT NULL,
        PRIMARY KEY (station_id, product_id, product_version)
    ) WITHOUT ROWID""",
    "CREATE TABLE summary_reasons (code TEXT PRIMARY KEY, failures INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE summary_devices (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seen INTEGER NOT NULL, passed INTEGER NOT NULL, failing INTEGER NOT NULL,
        tested INTEGER NOT NULL, first_pass INTEGER NOT NULL
    )""",
    # The totals of what the registry already holds, computed once.
    """INSERT INTO summary_lines SELECT ifnull(station_id, ''), ifnull(product_id, -1),
        ifnull(product_version, -1), count(*), sum(result = 'pass'), sum(result = 'fail'),
        sum(result = 'interrupted'), min(started_at), max(coalesce(ended_at, started_at))
        FROM attempts GROUP BY 1, 2, 3""",
    """INSERT INTO summary_reasons SELECT coalesce(error_code, 'unknown'), count(*)
        FROM attempts WHERE result = 'fail' GROUP BY 1""",
    """INSERT INTO summary_devices SELECT 1, count(*), count(passed_at),
        coalesce(sum(passed_at IS NULL AND last_result = 'fail'), 0), count(first_result_at),
        coalesce(sum(first_result_at IS NOT NULL AND first_result = 'pass'), 0) FROM devices""",
    "CREATE TRIGGER summary_attempt_insert AFTER INSERT ON attempts BEGIN "
    + _line_delta("new", +1)
    + _reason_delta("new", +1)
    + " END",
    f"CREATE TRIGGER summary_attempt_update AFTER UPDATE OF {_ATTEMPT_COLUMNS} ON attempts BEGIN "
    + _line_delta("old", -1)
    + _line_delta("new", +1)
    + _reason_delta("old", -1)
    + _reason_delta("new", +1)
    + " END",
    "CREATE TRIGGER summary_attempt_delete AFTER DELETE ON attempts BEGIN "
    + _line_delta("old", -1)
    + _reason_delta("old", -1)
    + " END",
    "CREATE TRIGGER summary_device_insert AFTER INSERT ON devices BEGIN " + _device_delta("new", +1) + " END",
    f"CREATE TRIGGER summary_device_update AFTER UPDATE OF {_DEVICE_COLUMNS} ON devices BEGIN "
    + _device_delta("old", -1)
    + _device_delta("new", +1)
    + " END",
    "CREATE TRIGGER summary_device_delete AFTER DELETE ON devices BEGIN " + _device_delta("old", -1) + " END",
)
