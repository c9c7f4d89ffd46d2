"""The sync worker draining a real registry's outbox into the simulated console over loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from station.cloud.backoff import Backoff, RateLimiter
from station.cloud.config import CloudConfig, Timeouts
from station.cloud.models import ImportOutcome
from station.cloud.sync import SyncEvent, SyncEventKind, SyncThread, SyncWorker, start_background_sync
from station.cloud.token import AccessToken
from station.sim.console import ROUTES, Call, RateLimit, Route, SimConsole, SimToken, error
from station.sim.console_http import ApiResponse
from station.sim.faults import FaultKind
from station.store import OutboxState, Registry
from tests.station.test_cloud_fixtures import (  # noqa: F401  (the cloud / registry fixtures)
    PRODUCT,
    TOKEN,
    Cloud,
    FakeClock,
    bulk_enqueue,
    cloud_fixture,
    device_ids,
    registry_fixture,
    start_cloud,
)

DAY = 86_400.0
IMPORT = "/v1/products/{product}/devices"


def worker_for(
    registry: Registry,
    cloud: Cloud,
    *,
    clock: FakeClock | None = None,
    batch_size: int = 50,
    events: list[SyncEvent] | None = None,
    **client_kwargs: object,
) -> SyncWorker:
    clock = clock or FakeClock()
    return SyncWorker(
        registry.outbox,
        cloud.client(**client_kwargs),  # type: ignore[arg-type]
        product=PRODUCT,
        batch_size=batch_size,
        sleep=clock.sleep,
        random=lambda: 0.5,
        on_event=None if events is None else events.append,
    )


def states(registry: Registry) -> dict[str, OutboxState]:
    return {e.device_id: e.state for e in registry.outbox.entries(product=PRODUCT)}


def test_batches_and_partial_results(registry: Registry, cloud: Cloud) -> None:
    valid = device_ids(120)
    nonmember, protected, wrong_platform = device_ids(3, start=1000)
    cloud.console.state.claim_elsewhere([nonmember])
    cloud.console.state.protect([protected])
    cloud.console.state.platforms[wrong_platform] = 6
    already = valid[7]
    with cloud.client() as pre:
        pre.import_devices(PRODUCT, [already])
    for device in [*valid, nonmember, "0123-not-an-id", protected, wrong_platform]:
        registry.outbox.enqueue(device, PRODUCT)

    report = worker_for(registry, cloud).drain()

    assert report.complete and report.requests == 3 and report.failures == 0
    assert report.outcomes == {
        ImportOutcome.UPDATED: 119,
        ImportOutcome.EXISTING: 1,
        ImportOutcome.NONMEMBER: 1,
        ImportOutcome.INVALID: 2,
        ImportOutcome.PROTECTED: 1,
    }
    got = states(registry)
    assert all(got[d] is OutboxState.SYNCED for d in valid)
    assert got[nonmember] is OutboxState.NEEDS_ATTENTION
    assert got[protected] is OutboxState.PROTECTED
    assert got["0123-not-an-id"] is OutboxState.INVALID and got[wrong_platform] is OutboxState.INVALID
    entry = next(e for e in registry.outbox.entries(state=OutboxState.NEEDS_ATTENTION))
    assert "outside the product team" in (entry.last_error or "")
    assert cloud.console.stats().import_requests == 4
    assert set(cloud.console.product_device_ids(PRODUCT)) == set(valid)


@pytest.mark.slow  # ~3 s: some 580 failed tries, each one committed to the registry
def test_a_day_offline_then_back_every_valid_id_synced_exactly_once(registry: Registry, cloud: Cloud) -> None:
    clock = FakeClock(0.0)
    produced: list[str] = []
    bad = ["ffff-bad-id"]
    nonmember = f"{10**9:024x}"
    cloud.console.state.claim_elsewhere([nonmember])
    for device in [*bad, nonmember]:
        registry.outbox.enqueue(device, PRODUCT)
    cloud.console.set_offline(True)

    def line_keeps_working(seconds: float) -> None:
        # While the worker waits, the line goes on flashing (recorded here hour by hour, 60 boards an
        # hour); the uplink returns after a day.
        hour_before = int(clock.now // 3600)
        clock.sleep(seconds)
        hours = min(int(clock.now // 3600), 24) - hour_before
        if hours > 0:
            new = device_ids(60 * hours, start=len(produced))
            produced.extend(new)
            bulk_enqueue(registry, new)
        if clock.now >= DAY:
            cloud.console.set_offline(False)

    worker = SyncWorker(
        registry.outbox,
        cloud.client(),
        product=PRODUCT,
        batch_size=500,
        backoff=Backoff(base=1.0, cap=300.0),
        sleep=line_keeps_working,
        random=lambda: 0.0,
    )
    report = worker.drain(max_failures=None)

    assert report.complete, report.stopped
    assert clock.now >= DAY
    offline_tries = cloud.console.stats().dropped
    # Backoff spaced the tries: at least cap/2 apart once it reached the cap, not thousands of them.
    assert 250 <= offline_tries <= DAY / 150 + 20
    got = states(registry)
    assert len(produced) == 24 * 60
    assert all(got[d] is OutboxState.SYNCED for d in produced)
    assert got[bad[0]] is OutboxState.INVALID and got[nonmember] is OutboxState.NEEDS_ATTENTION
    added = cloud.console.stats().added
    assert set(added) == set(produced) and set(added.values()) == {1}
    listed = cloud.console.product_device_ids(PRODUCT)
    assert sorted(listed) == sorted(produced)
    first = registry.outbox.entries(product=PRODUCT)[0]
    assert first.tries >= 250 and first.last_error is not None


def test_429_storm_with_retry_after(registry: Registry) -> None:
    clock = FakeClock()
    cloud = start_cloud(rate_limit=RateLimit(3, 60.0), clock=clock)
    try:
        bulk_enqueue(registry, device_ids(1000))
        events: list[SyncEvent] = []
        report = worker_for(registry, cloud, clock=clock, batch_size=100, events=events).drain()
        assert report.complete and report.requests == 10 + report.failures
        stats = cloud.console.stats()
        assert stats.rate_limited == report.failures >= 3
        retries = [e for e in events if e.kind is SyncEventKind.RETRY]
        assert retries and all(e.wait is not None and e.wait >= 1.0 for e in retries)
        assert all("429" in e.message for e in retries)
        # Each wait honoured the Retry-After the console sent (never sooner than the window allows).
        assert min(clock.sleeps) >= 1.0
        assert set(stats.added.values()) == {1} and len(stats.added) == 1000
    finally:
        cloud.server.stop()


def test_429_storm_without_retry_after_backs_off_exponentially(registry: Registry) -> None:
    clock = FakeClock()
    cloud = start_cloud(rate_limit=RateLimit(2, 60.0, retry_after=False), clock=clock)
    try:
        bulk_enqueue(registry, device_ids(300))
        report = worker_for(registry, cloud, clock=clock, batch_size=50).drain(max_failures=20)
        assert report.complete
        assert report.failures >= 2
        # Consecutive failures grow their waits (random fixed at 0.5: 0.75, 1.5, 3, ...).
        assert clock.sleeps[:3] == [0.75, 1.5, 3.0]
    finally:
        cloud.server.stop()


def test_client_side_limiter_keeps_under_the_console_limit(registry: Registry) -> None:
    clock = FakeClock()
    cloud = start_cloud(rate_limit=RateLimit(5, 300.0), clock=clock)
    try:
        bulk_enqueue(registry, device_ids(600))
        limiter = RateLimiter(5, 300.0, clock=clock, sleep=clock.sleep)
        report = worker_for(registry, cloud, clock=clock, batch_size=50, limiter=limiter).drain()
        assert report.complete and report.requests == 12 and report.failures == 0
        assert cloud.console.stats().rate_limited == 0
        assert clock.now >= 1000 + 2 * 300  # two full windows waited out, not hammered
    finally:
        cloud.server.stop()


def test_server_errors_retry_and_count_tries(registry: Registry, cloud: Cloud) -> None:
    bulk_enqueue(registry, device_ids(100))
    cloud.console.inject(FaultKind.ERROR_STATUS, times=4)
    report = worker_for(registry, cloud, batch_size=100).drain()
    assert report.complete and report.failures == 4 and report.requests == 5
    entries = registry.outbox.entries(product=PRODUCT)
    # Four tries without an answer are counted; the answer that came at last clears the error.
    assert all(e.state is OutboxState.SYNCED and e.tries == 4 and e.last_error is None for e in entries)


def test_timeouts_and_dropped_answers_never_double_import(registry: Registry, cloud: Cloud) -> None:
    bulk_enqueue(registry, device_ids(150))
    cloud.console.stall_seconds = 1.0
    cloud.console.inject(FaultKind.STALL, at=1)
    cloud.console.inject(FaultKind.DISCONNECT, at=3)
    worker = worker_for(registry, cloud, batch_size=50, timeouts=Timeouts(connect=2, read=0.3, write=2, pool=2))
    report = worker.drain()
    assert report.complete and report.failures == 2
    # The cloud acted on the stalled and the dropped request; the resend found those devices existing.
    assert report.outcomes[ImportOutcome.EXISTING] == 100
    assert report.outcomes[ImportOutcome.UPDATED] == 50
    added = cloud.console.stats().added
    assert len(added) == 150 and set(added.values()) == {1}
    assert all(s is OutboxState.SYNCED for s in states(registry).values())


def test_gives_up_after_max_failures_and_keeps_rows_pending(registry: Registry, cloud: Cloud) -> None:
    bulk_enqueue(registry, device_ids(10))
    cloud.console.set_offline(True)
    report = worker_for(registry, cloud).drain(max_failures=3)
    assert report.stopped is not None and "gave up after 3" in report.stopped
    assert report.fatal is None and not report.complete
    assert all(e.state is OutboxState.PENDING and e.tries == 3 for e in registry.outbox.entries())


@pytest.mark.parametrize("scopes", [None, frozenset({"devices:list"})])
def test_auth_failure_stops_with_the_scope_named(
    registry: Registry, cloud: Cloud, scopes: frozenset[str] | None
) -> None:
    bulk_enqueue(registry, device_ids(120))
    token = "bad-token" if scopes is None else "list-only"
    if scopes is not None:
        cloud.console.add_token(SimToken(token, scopes=scopes))
    events: list[SyncEvent] = []
    worker = worker_for(registry, cloud, events=events, token=token)
    report = worker.drain()
    assert report.fatal is not None and report.requests == 1
    assert "devices:import" in str(report.fatal)
    assert events[-1].kind is SyncEventKind.STOPPED
    assert all(e.state is OutboxState.PENDING for e in registry.outbox.entries())
    assert cloud.console.stats().import_requests == 0


def test_refused_batch_is_split_to_find_what_the_cloud_refuses(registry: Registry) -> None:
    cloud = start_cloud(max_import=16)
    try:
        bulk_enqueue(registry, device_ids(100))
        report = worker_for(registry, cloud, batch_size=100).drain()
        assert report.complete
        assert all(s is OutboxState.SYNCED for s in states(registry).values())
        assert len(cloud.console.stats().added) == 100
        # 100 -> 50 -> 25 -> 13: the first device rode in three refused batches before one was taken.
        first = registry.outbox.entries()[0]
        assert first.tries == 3 and first.last_error is None
    finally:
        cloud.server.stop()


def _replace_import_route(cloud: Cloud, handler: Callable[[SimConsole, Call], ApiResponse]) -> None:
    cloud.console.routes = tuple(
        Route(r.method, r.template, handler, scope=r.scope, mutates=r.mutates) if r.template == IMPORT else r
        for r in cloud.console.routes
    )


def _real_import(console: SimConsole, call: Call) -> ApiResponse:
    route = next(r for r in ROUTES if (r.method, r.template) == ("POST", IMPORT))
    return route.handler(console, call)


def test_an_id_refused_on_its_own_stays_pending_and_is_reported(registry: Registry, cloud: Cloud) -> None:
    odd = "x" * 200
    good = device_ids(5)
    bulk_enqueue(registry, [*good[:2], odd, *good[2:]])

    def refuse_long(console: SimConsole, call: Call) -> ApiResponse:
        if odd.encode() in call.request.body:
            return error(400, "invalid_request", "identifier too long")
        return _real_import(console, call)

    _replace_import_route(cloud, refuse_long)
    report = worker_for(registry, cloud).drain()
    assert report.rejected == (odd,) and not report.complete
    got = states(registry)
    assert got[odd] is OutboxState.PENDING and all(got[d] is OutboxState.SYNCED for d in good)
    entry = registry.outbox.entries(state=OutboxState.PENDING)[0]
    assert "identifier too long" in (entry.last_error or "") and entry.tries >= 1


def test_a_cloud_that_refuses_every_request_is_not_asked_twice_per_device(registry: Registry, cloud: Cloud) -> None:
    bulk_enqueue(registry, device_ids(1000))
    _replace_import_route(cloud, lambda console, call: error(400, "invalid_request", "API change"))
    report = worker_for(registry, cloud, batch_size=500).drain()
    assert report.stopped is not None and "refused 8 devices in a row, each on its own" in report.stopped
    assert "API change" in report.stopped
    # Bisecting all 1,000 would take about 2,000 requests; a systematic refusal is seen in a few dozen.
    assert cloud.console.stats().requests < 40
    assert registry.outbox.counts(PRODUCT)[OutboxState.PENDING] == 1000


def test_ids_refused_one_by_one_at_the_head_do_not_block_the_queue(registry: Registry, cloud: Cloud) -> None:
    odd = [f"x{i}" + "x" * 200 for i in range(10)]
    good = device_ids(20)
    bulk_enqueue(registry, [*odd, *good])

    def refuse_long(console: SimConsole, call: Call) -> ApiResponse:
        if any(o.encode() in call.request.body for o in odd):
            return error(400, "invalid_request", "identifier too long")
        return _real_import(console, call)

    _replace_import_route(cloud, refuse_long)
    worker = worker_for(registry, cloud)
    first = worker.drain(max_failures=None)  # as the line's thread drains
    assert first.stopped is not None and len(first.rejected) == 8
    # The thread's next drain goes past the IDs already refused on their own.
    second = worker.drain(max_failures=None)
    assert second.stopped is None and set(second.rejected) == set(odd[8:])
    got = states(registry)
    assert all(got[d] is OutboxState.SYNCED for d in good) and all(got[o] is OutboxState.PENDING for o in odd)


def test_unmentioned_ids_stay_pending(registry: Registry, cloud: Cloud) -> None:
    ids = device_ids(4)
    bulk_enqueue(registry, ids)

    def forgetful(console: SimConsole, call: Call) -> ApiResponse:
        answer = _real_import(console, call)
        assert isinstance(answer.body, dict)
        body = dict(answer.body)
        body["updatedDeviceIds"] = [d for d in body["updatedDeviceIds"] if d != ids[2]]
        return ApiResponse(200, body)

    _replace_import_route(cloud, forgetful)
    report = worker_for(registry, cloud).drain()
    assert report.unmentioned == (ids[2],)
    got = states(registry)
    assert got[ids[2]] is OutboxState.PENDING and got[ids[0]] is OutboxState.SYNCED


def test_hundred_thousand_ids_in_batches(registry: Registry, cloud: Cloud) -> None:
    ids = device_ids(100_000)
    bulk_enqueue(registry, ids)
    started = time.perf_counter()
    report = worker_for(registry, cloud, batch_size=5000).drain()
    elapsed = time.perf_counter() - started
    assert report.complete and report.requests == 20
    assert registry.outbox.counts(PRODUCT)[OutboxState.SYNCED] == 100_000
    assert cloud.console.stats().ids_received == 100_000
    assert elapsed < 60  # a generous bound: the figure itself is bench/sync.py's job


def test_token_never_in_logs_or_events(registry: Registry, cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bulk_enqueue(registry, device_ids(60))
    cloud.console.inject(FaultKind.ERROR_STATUS)
    cloud.console.inject(FaultKind.DISCONNECT, at=3)
    events: list[SyncEvent] = []
    worker_for(registry, cloud, events=events).drain()
    bad_events: list[SyncEvent] = []
    worker_for(registry, cloud, events=bad_events, token=TOKEN[::-1]).drain()
    registry.outbox.enqueue(f"{10**8:024x}", PRODUCT)
    worker_for(registry, cloud, events=bad_events, token=TOKEN[::-1]).drain()
    assert caplog.records and events and bad_events
    text = caplog.text + repr(events) + repr(bad_events)
    text += "".join(repr(e) for e in registry.outbox.entries())
    assert TOKEN not in text and TOKEN[::-1] not in text


def test_background_thread_drains_wakes_and_stops_cleanly(registry: Registry, cloud: Cloud) -> None:
    worker = SyncWorker(registry.outbox, cloud.client(), product=PRODUCT, batch_size=20)
    thread = SyncThread(worker, idle_poll=30.0).start()
    try:
        bulk_enqueue(registry, device_ids(45))
        thread.wake()
        deadline = time.monotonic() + 10
        while worker.backlog() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.backlog() == 0
        registry.outbox.enqueue(device_ids(1, start=500)[0], PRODUCT)
        thread.wake()
        deadline = time.monotonic() + 10
        while worker.backlog() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.backlog() == 0
        # Stopping in the middle of a long backoff is prompt.
        cloud.console.set_offline(True)
        registry.outbox.enqueue(device_ids(1, start=501)[0], PRODUCT)
        thread.wake()
        time.sleep(0.2)
        started = time.monotonic()
        assert thread.stop(timeout=5)
        assert time.monotonic() - started < 2
        assert thread.error is None and not thread.running
    finally:
        thread.stop()


def test_background_thread_stops_itself_on_auth_error(registry: Registry, cloud: Cloud) -> None:
    worker = SyncWorker(registry.outbox, cloud.client("revoked"), product=PRODUCT)
    bulk_enqueue(registry, device_ids(3))
    thread = SyncThread(worker, idle_poll=0.01).start()
    deadline = time.monotonic() + 10
    while thread.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not thread.running
    assert thread.error is not None and "devices:import" in str(thread.error)
    assert worker.backlog() == 3


def test_start_background_sync_from_config(registry: Registry, cloud: Cloud) -> None:
    config = CloudConfig(product=PRODUCT, base_url=cloud.url, batch_size=7)
    events: list[SyncEvent] = []
    thread = start_background_sync(registry.outbox, config, AccessToken(TOKEN, source="t"), on_event=events.append)
    try:
        bulk_enqueue(registry, device_ids(20))
        thread.wake()
        deadline = time.monotonic() + 10
        while thread.worker.backlog() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert thread.worker.backlog() == 0
    finally:
        assert thread.stop(timeout=5)
    assert [e.devices for e in events if e.kind is SyncEventKind.BATCH] == [7, 7, 6]
    assert TOKEN not in repr(events)
