"""The registry's write path: transitions, their rules, recovery of dead runs, threads, and paths."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.errors import Reason
from station.store import (
    AttemptResult,
    AttemptStateError,
    ImageDigest,
    InvalidRecord,
    OutboxState,
    Registry,
    RegistryMissing,
    RegistryUnavailable,
    RunContext,
    Slot,
    resolve_db_path,
)
from station.store.paths import DB_ENV, default_db_path

CONTEXT = RunContext(
    station_id="bench-1",
    operator="ana",
    bundle_id="acme-v3",
    bundle_sha256="ab" * 32,
    product_id=1234,
    product_version=3,
    images=(ImageDigest("system-part1", "11" * 32), ImageDigest("user-part", "22" * 32)),
)


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0  # every reading one second later: phases get distinct, known lengths
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "station.db", clock=FakeClock())
    yield reg
    reg.close()


def test_a_pass_records_device_phases_images_and_queues_the_import(registry: Registry) -> None:
    attempt = registry.start_attempt(Slot("1-1.4", "A1"), CONTEXT)
    registry.record_phase(attempt, "identify")
    assert registry.identify(attempt, " 0123456789ABCDEF01234567 ", "argon") == "0123456789abcdef01234567"
    for phase in ("erase", "write", "verify"):
        registry.record_phase(attempt, phase)
    registry.finish_attempt(attempt, AttemptResult.PASS, enqueue_product="acme-sensor", group="line-a")

    record = registry.attempt(attempt)
    assert record.result is AttemptResult.PASS
    assert record.device_id == "0123456789abcdef01234567"
    assert record.slot == Slot("1-1.4", "A1")
    assert record.context == CONTEXT
    assert [(p.phase, p.seconds) for p in record.phases] == [
        ("identify", 2.0),  # identify() and the next record_phase each read the clock once
        ("erase", 1.0),
        ("write", 1.0),
        ("verify", 1.0),
    ]
    assert record.phase == "verify"
    device = registry.device("0123456789ABCDEF01234567")
    assert device is not None
    assert (device.platform, device.attempts, device.last_result) == ("argon", 1, AttemptResult.PASS)
    assert device.passed_at == record.ended_at
    [entry] = registry.outbox.entries()
    assert (entry.device_id, entry.product, entry.state, entry.group) == (
        "0123456789abcdef01234567",
        "acme-sensor",
        OutboxState.PENDING,
        "line-a",
    )
    assert registry.check_consistency() == ()


def test_a_failure_keeps_its_reason_and_where_it_stopped(registry: Registry) -> None:
    attempt = registry.start_attempt(Slot("1-1.5"), CONTEXT)
    registry.identify(attempt, "aabbccddeeff", "ESP32-S3")
    registry.record_phase(attempt, "write")
    registry.finish_attempt(attempt, "fail", Reason.DISCONNECTED, "device vanished at block 12", enqueue_product="acme")
    record = registry.attempt(attempt)
    assert (record.result, record.error_code, record.phase) == (AttemptResult.FAIL, "disconnected", "write")
    assert record.error_message == "device vanished at block 12"
    assert registry.outbox.entries() == []  # only a PASS is imported


def test_an_attempt_the_line_abandons_is_interrupted(registry: Registry) -> None:
    attempt = registry.start_attempt(Slot("1-1.6"), CONTEXT)
    registry.record_phase(attempt, "write")
    registry.finish_attempt(attempt, AttemptResult.INTERRUPTED)
    record = registry.attempt(attempt)
    assert (record.result, record.error_code, record.phase) == (AttemptResult.INTERRUPTED, "interrupted", "write")
    assert registry.stats().attempts_interrupted == 1


def test_transitions_out_of_order_are_refused(registry: Registry) -> None:
    attempt = registry.start_attempt(Slot("1-1.1"), CONTEXT)
    with pytest.raises(AttemptStateError, match="needs the device's ID"):
        registry.finish_attempt(attempt, "pass")
    with pytest.raises(AttemptStateError, match="not a way to finish"):
        registry.finish_attempt(attempt, "running")
    registry.identify(attempt, "aa01", "photon")
    registry.identify(attempt, "AA01", "photon")  # the same board again is fine
    with pytest.raises(AttemptStateError, match="already belongs"):
        registry.identify(attempt, "bb02", "photon")
    with pytest.raises(AttemptStateError, match="carries no error"):
        registry.finish_attempt(attempt, "pass", "timeout")
    registry.finish_attempt(attempt, "pass")
    with pytest.raises(AttemptStateError, match="already ended as pass"):
        registry.finish_attempt(attempt, "pass")
    with pytest.raises(AttemptStateError, match="already ended"):
        registry.record_phase(attempt, "verify")
    with pytest.raises(AttemptStateError, match="no attempt 999"):
        registry.record_phase(999, "write")
    assert registry.stats().attempts_passed == 1


@pytest.mark.parametrize("bad", ["", "   ", "ab cd", "ab\ncd", "x" * 65, "é1"])
def test_unusable_device_ids_are_refused(registry: Registry, bad: str) -> None:
    attempt = registry.start_attempt(Slot("1-1.1"), CONTEXT)
    with pytest.raises(InvalidRecord):
        registry.identify(attempt, bad, "photon")


def test_missing_station_id_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidRecord, match="station id"):
        registry.start_attempt(Slot("1-1.1"), RunContext(station_id=""))


def test_retry_after_failure_and_first_pass_yield(registry: Registry) -> None:
    def run(device: str, result: str) -> None:
        attempt = registry.start_attempt(Slot("1-1.1"), CONTEXT)
        registry.identify(attempt, device, "photon")
        registry.finish_attempt(attempt, result, None if result == "pass" else "timeout")

    run("d1", "pass")
    run("d2", "fail")
    run("d2", "pass")  # re-plugged and passed: counted once as passed, not a first pass
    run("d3", "fail")
    run("d1", "pass")  # flashed again: still one passed device
    stats = registry.stats()
    assert (stats.attempts, stats.attempts_passed, stats.attempts_failed) == (5, 3, 2)
    assert (stats.devices_seen, stats.devices_passed, stats.devices_failing) == (3, 2, 1)
    assert stats.first_pass_yield == pytest.approx(1 / 3)
    assert [(r.code, r.count) for r in stats.failures_by_reason] == [("timeout", 2)]
    assert [d.device_id for d in registry.iter_devices(passed_only=True)] == ["d1", "d2"]


def test_a_dead_process_attempts_are_interrupted_at_next_open(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    crashed = Registry(path)
    attempt = crashed.start_attempt(Slot("1-1.2"), CONTEXT)
    crashed.identify(attempt, "cc03", "photon")
    crashed.record_phase(attempt, "write")
    # Simulate the process dying: its session lock goes away with it, nothing else is written.
    assert crashed._session_lock is not None
    crashed._session_lock.release()
    crashed._conn.close()

    with Registry(path) as reopened:
        record = reopened.attempt(attempt)
        assert (record.result, record.error_code, record.phase) == (AttemptResult.INTERRUPTED, "interrupted", "write")
        assert record.phases[-1].ended_at is not None
        device = reopened.device("cc03")
        assert device is not None and device.last_result is AttemptResult.INTERRUPTED
        assert reopened.stats().first_pass_yield is None  # an interruption is not the device's fault
        assert reopened.check_consistency() == ()
        assert reopened.recover_interrupted() == ()


def test_a_live_line_is_not_interrupted_by_a_report_opening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    with Registry(path) as line:
        attempt = line.start_attempt(Slot("1-1.3"), CONTEXT)
        with Registry(path, create=False) as report:
            assert report.attempt(attempt).result is AttemptResult.RUNNING
            assert report.recover_interrupted() == ()
        line.identify(attempt, "dd04", "photon")
        line.finish_attempt(attempt, "pass")
        assert line.attempt(attempt).result is AttemptResult.PASS


def test_close_interrupts_what_is_still_running(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    line = Registry(path)
    attempt = line.start_attempt(Slot("1-1.3"), CONTEXT)
    line.close()
    line.close()  # twice is harmless
    with Registry(path) as again:
        assert again.attempt(attempt).result is AttemptResult.INTERRUPTED
    assert not list((tmp_path / "station.db-sessions").iterdir())


def test_many_worker_threads_record_at_once(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "station.db")
    workers, per_worker = 8, 15
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(per_worker):
                attempt = registry.start_attempt(Slot(f"1-{n}"), CONTEXT)
                registry.record_phase(attempt, "identify")
                registry.identify(attempt, f"{n:02x}{i:022x}", "photon")
                registry.record_phase(attempt, "write")
                if i % 5 == 4:
                    registry.finish_attempt(attempt, "fail", "timeout", "slow")
                else:
                    registry.finish_attempt(attempt, "pass", enqueue_product="p")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    stats = registry.stats()
    assert stats.attempts == workers * per_worker
    assert stats.attempts_passed == workers * per_worker * 4 // 5
    assert registry.outbox.counts()[OutboxState.PENDING] == stats.devices_passed
    assert Counter(r.phase for r in registry.history()) == {"write": workers * per_worker}
    assert registry.check_consistency() == ()
    registry.close()


# -- where the registry lives -----------------------------------------------------------------


def test_db_path_precedence() -> None:
    assert resolve_db_path("/x/a.db", {DB_ENV: "/y/b.db"}) == Path("/x/a.db")
    assert resolve_db_path(None, {DB_ENV: "/y/b.db"}) == Path("/y/b.db")
    assert resolve_db_path(None, {}) == default_db_path()
    assert default_db_path().name == "station.db"
    assert "benchflash" in str(default_db_path())


def test_parent_folders_are_created(tmp_path: Path) -> None:
    Registry(tmp_path / "a" / "b" / "station.db").close()
    assert (tmp_path / "a" / "b" / "station.db").is_file()


def test_an_unusable_location_is_one_line_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RegistryUnavailable) as info:
        Registry(blocker / "station.db")
    text = str(info.value)
    assert "\n" not in text and "--db" in text and DB_ENV in text
    assert info.value.exit_code == 2
    with pytest.raises(RegistryUnavailable, match="is a folder"):
        Registry(tmp_path)


def test_reports_refuse_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryMissing, match="no registry at"):
        Registry(tmp_path / "typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()
