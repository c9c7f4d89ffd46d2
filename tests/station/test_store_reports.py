"""Reports over generated histories: export, stats, history filters, and reading ``--since``."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.errors import InputError
from station.store import Registry, RunContext, Slot
from station.store.export import ExportFormat, Tally, atomic_text_file, check_choice, render
from station.store.when import UtcFormatter, iso_utc, parse_since

DEVICES = [f"{i:024x}" for i in range(6)]
OUTCOMES = ["pass", "fail", "interrupted", "running", "unidentified"]


class StepClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


def _record(registry: Registry, history: list[tuple[int, str]]) -> list[int]:
    ids = []
    for n, (device, outcome) in enumerate(history):
        attempt = registry.start_attempt(
            Slot(f"1-{n % 3}", f"S{n % 3}"), RunContext(f"st{n % 2}", product_id=7, product_version=1)
        )
        ids.append(attempt)
        if outcome == "unidentified":
            registry.finish_attempt(attempt, "fail", "not-found", "no answer")
            continue
        registry.identify(attempt, DEVICES[device], "photon")
        if outcome == "pass":
            registry.finish_attempt(attempt, "pass", enqueue_product="7")
        elif outcome == "fail":
            registry.finish_attempt(attempt, "fail", "timeout" if n % 2 else "verify-mismatch")
        elif outcome == "interrupted":
            registry.finish_attempt(attempt, "interrupted", "interrupted")
    return ids


histories = st.lists(st.tuples(st.integers(0, len(DEVICES) - 1), st.sampled_from(OUTCOMES)), max_size=25)


@settings(max_examples=40, deadline=None)
@given(histories)
def test_export_and_stats_agree_with_the_history(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[int, str]]
) -> None:
    with Registry(tmp_path_factory.mktemp("rep") / "station.db", clock=StepClock()) as registry:
        _record(registry, history)
        identified = [(DEVICES[d], o) for d, o in history if o != "unidentified"]
        passed = {d for d, o in identified if o == "pass"}

        tally = Tally()
        txt = "".join(render(registry, ExportFormat.TXT, tally=tally, chunk=30))
        assert txt.splitlines() == sorted(passed)  # each passed device once, nothing else
        assert tally.rows == len(passed)
        assert [d.device_id for d in registry.iter_devices(passed_only=True, chunk=2)] == sorted(passed)

        rows = list(csv.DictReader(io.StringIO("".join(render(registry, ExportFormat.CSV, include_all=True)))))
        last: dict[str, str] = {}
        for device, outcome in identified:
            last[device] = outcome
        assert {r["device_id"]: r["last_result"] for r in rows} == last
        assert {r["device_id"] for r in rows if r["passed_at"]} == passed

        as_json = json.loads("".join(render(registry, ExportFormat.JSON, include_all=True, chunk=10)))
        assert [r["device_id"] for r in as_json] == sorted(last)
        assert [r["device_id"] for r in json.loads("".join(render(registry, ExportFormat.JSON)))] == sorted(passed)
        by_id = {d.device_id: d for d in registry.iter_devices(chunk=3)}
        for row in as_json:  # the SQL-formatted times say what the records say
            record = by_id[row["device_id"]]
            assert row["first_seen"] == iso_utc(record.first_seen)
            assert row["passed_at"] == iso_utc(record.passed_at)
            assert row["attempts"] == record.attempts

        stats = registry.stats()
        assert stats.attempts == len(history)
        assert stats.attempts_passed == sum(o == "pass" for _, o in history)
        assert stats.attempts_failed == sum(o in ("fail", "unidentified") for _, o in history)
        assert stats.attempts_running == sum(o == "running" for _, o in history)
        assert stats.devices_passed == len(passed)
        assert stats.devices_seen == len(last)
        first: dict[str, str] = {}
        for device, outcome in identified:
            if outcome in ("pass", "fail"):
                first.setdefault(device, outcome)
        expected_fpy = (sum(o == "pass" for o in first.values()) / len(first)) if first else None
        assert stats.first_pass_yield == expected_fpy
        assert sum(r.count for r in stats.failures_by_reason) == stats.attempts_failed
        assert sum(line.attempts for line in stats.by_line) == stats.attempts
        assert registry.check_consistency() == ()


def test_stats_and_history_over_a_window(tmp_path: Path) -> None:
    clock = StepClock()
    with Registry(tmp_path / "station.db", clock=clock) as registry:
        _record(registry, [(0, "fail"), (0, "pass"), (1, "pass")])
        cut = clock.now + 1  # after every event so far, before the next
        _record(registry, [(2, "fail"), (2, "fail"), (3, "pass"), (1, "pass")])
        late = registry.stats(since=cut)
        assert (late.attempts, late.attempts_passed, late.attempts_failed) == (4, 2, 2)
        assert (late.devices_seen, late.devices_passed, late.devices_failing) == (3, 2, 1)
        assert late.first_pass_yield == 0.5  # devices 2 (fail) and 3 (pass) were first tested here
        assert late.last_event_at is not None and late.first_started_at is not None
        assert late.devices_per_hour == pytest.approx(2 * 3600 / (late.last_event_at - late.first_started_at))
        assert [r.id for r in registry.history(since=cut)] == [4, 5, 6, 7]
        assert [r.id for r in registry.history(device_id=DEVICES[1].upper())] == [3, 7]
        assert [r.id for r in registry.history(limit=2)] == [6, 7]
        assert registry.count_attempts(since=cut) == 4
        assert registry.stats().first_pass_yield == 0.5  # devices 0 (fail first), 1, 2, 3


def test_empty_registry_has_no_rates(tmp_path: Path) -> None:
    with Registry(tmp_path / "station.db") as registry:
        stats = registry.stats()
        assert (stats.attempts, stats.first_pass_yield, stats.devices_per_hour) == (0, None, None)


def test_txt_with_all_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="passed devices only"):
        check_choice(ExportFormat.TXT, include_all=True)
    with Registry(tmp_path / "station.db") as registry, pytest.raises(InputError):
        list(render(registry, ExportFormat.TXT, include_all=True))


def test_atomic_file_is_untouched_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "ids.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_text_file(target) as fh:
        fh.write("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ids.txt"]
    with atomic_text_file(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"


# -- --since ----------------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 259200), ("1w", 604800), ("1.5h", 5400)]
)
def test_since_ages(text: str, seconds: int) -> None:
    assert parse_since(text, now=NOW) == NOW - seconds
    assert parse_since(text.upper(), now=NOW) == NOW - seconds


def test_since_dates() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert parse_since("2026-11-26T08:00:00Z", now=NOW) == 1795680000.0
    assert parse_since("2026-11-26T09:00:00+01:00", now=NOW) == 1795680000.0
    assert parse_since("2026-11-26 09:00", now=NOW, tz=plus_one) == 1795680000.0
    assert parse_since("2026-11-26", now=NOW, tz=UTC) == 1795651200.0


@pytest.mark.parametrize("bad", ["yesterday", "2h ago", "-3d", "", "2026-13-01", "99999999w"])
def test_since_garbage_is_one_clear_error(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_since(bad, now=NOW)
    assert "--since" in str(info.value)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_since_reads_back_what_iso_utc_writes(timestamp: float) -> None:
    text = iso_utc(timestamp)
    assert text is not None
    assert parse_since(text, now=NOW) == pytest.approx(timestamp, abs=0.001)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-2_000_000_000, max_value=4_000_000_000, allow_nan=False), max_size=20))
def test_the_bulk_time_formatter_agrees_with_datetime(timestamps: list[float]) -> None:
    formatter = UtcFormatter()  # one instance across many times, as an export uses it
    assert [formatter(t) for t in timestamps] == [iso_utc(t) for t in timestamps]
    assert formatter(None) is None


def test_all_time_stats_come_from_running_totals_that_match_a_full_scan(tmp_path: Path) -> None:
    """Every write path keeps the totals: line attempts, a crash's interruptions, a bulk SQL import."""
    import sqlite3

    path = tmp_path / "station.db"
    with Registry(path) as registry:
        context = RunContext(station_id="line-1", operator="ana", product_id=1234, product_version=3)
        for n in range(6):
            attempt = registry.start_attempt(Slot(f"1-1.{n}", f"A{n}"), context)
            registry.identify(attempt, f"{n:024x}", "argon")
            if n % 3 == 0:
                registry.finish_attempt(attempt, "fail", "timeout", "took too long")
            elif n % 3 == 1:
                registry.finish_attempt(attempt, "pass")
        stats = registry.stats()
        assert (stats.attempts, stats.attempts_passed, stats.attempts_failed, stats.attempts_running) == (6, 2, 2, 2)
        assert [(r.code, r.count) for r in stats.failures_by_reason] == [("timeout", 2)]
        assert (stats.devices_seen, stats.devices_passed, stats.devices_failing) == (6, 2, 2)
        assert registry.check_consistency() == ()
    # Rows written behind the registry's back (a bulk import, a repair by hand) are counted too.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE attempts SET result = 'interrupted', error_code = 'interrupted' WHERE result = 'running'")
    conn.execute("UPDATE attempts SET error_code = 'protocol' WHERE id = 1")
    conn.close()
    with Registry(path) as registry:
        stats = registry.stats()
        assert (stats.attempts_interrupted, stats.attempts_running) == (2, 0)
        assert sorted((r.code, r.count) for r in stats.failures_by_reason) == [("protocol", 1), ("timeout", 1)]
        assert registry.check_consistency() == ()
        assert stats.first_pass_yield == 2 / 4
