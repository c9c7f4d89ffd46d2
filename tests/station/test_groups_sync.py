"""The sync worker puts each imported batch into its device group and names devices from a mapping:
a device is synced only once placed, failures back off or stop as imports do, and `station sync`
reads both from the profile."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.cloud.groups import parse_device_names
from station.cloud.sync import SyncWorker
from station.sim.console import SimToken
from station.sim.console_state import SimDevice, SimGroup
from station.sim.faults import FaultKind
from station.store import OutboxState, Registry
from tests.station.test_cloud_fixtures import (  # noqa: F401  (the cloud / registry fixtures)
    PRODUCT,
    TOKEN,
    Cloud,
    FakeClock,
    cloud_fixture,
    device_ids,
    registry_fixture,
)

GROUP = "20261126_bench-1"


def worker(registry: Registry, cloud: Cloud, clock: FakeClock, token: str = TOKEN, **kwargs: object) -> SyncWorker:
    return SyncWorker(
        registry.outbox,
        cloud.client(token),
        product=PRODUCT,
        batch_size=10,
        sleep=clock.sleep,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )


def console_groups(cloud: Cloud) -> dict[str, tuple[str, ...]]:
    return {d.id: d.groups for d in cloud.console.state.devices[int(PRODUCT)]}


def test_each_batch_goes_into_its_group_and_devices_are_named(registry: Registry, cloud: Cloud) -> None:
    ids = device_ids(12)
    registry.outbox.enqueue_many(ids[:8], PRODUCT, group=GROUP)
    registry.outbox.enqueue_many(ids[8:], PRODUCT, group="20261127_bench-1")
    names = parse_device_names("".join(f"{d},SN-{i:04d}\n" for i, d in enumerate(ids[:3])))
    report = worker(registry, cloud, FakeClock(), device_names=names).drain()
    assert report.complete and report.placed == 12
    assert set(registry.outbox.counts(PRODUCT).items()) >= {(OutboxState.SYNCED, 12), (OutboxState.PENDING, 0)}
    groups = console_groups(cloud)
    assert all(groups[d] == (GROUP,) for d in ids[:8])
    assert all(groups[d] == ("20261127_bench-1",) for d in ids[8:])
    assert set(cloud.console.state.groups[int(PRODUCT)]) == {GROUP, "20261127_bench-1"}
    named = {d.id: d.name for d in cloud.console.state.devices[int(PRODUCT)]}
    assert [named[d] for d in ids[:4]] == ["SN-0000", "SN-0001", "SN-0002", None]


def test_without_group_or_names_nothing_more_is_sent(registry: Registry, cloud: Cloud) -> None:
    registry.outbox.enqueue_many(device_ids(5), PRODUCT)
    report = worker(registry, cloud, FakeClock()).drain()
    assert report.complete and report.placed == 0 and report.place_requests == 0
    assert cloud.console.stats().requests == 1


def test_a_device_already_in_the_product_keeps_its_groups(registry: Registry, cloud: Cloud) -> None:
    known = device_ids(1, start=500)[0]
    with cloud.console.lock:
        cloud.console.state.groups[int(PRODUCT)]["pilot"] = SimGroup("pilot")
        cloud.console.state.devices[int(PRODUCT)].add(SimDevice(known, int(PRODUCT), groups=("pilot",)))
    registry.outbox.enqueue(known, PRODUCT, group=GROUP)
    report = worker(registry, cloud, FakeClock()).drain()
    assert report.complete
    assert console_groups(cloud)[known] == ("pilot", GROUP)
    # Placing again changes nothing (a resend after a lost answer).
    report = worker(registry, cloud, FakeClock()).drain()
    assert report.requests == 0


def test_a_failed_placement_backs_off_and_the_device_is_synced_only_when_placed(
    registry: Registry, cloud: Cloud
) -> None:
    ids = device_ids(3)
    registry.outbox.enqueue_many(ids, PRODUCT, group=GROUP)
    # Request 1 imports, 2 lists groups, 3 creates the group, 4 is the first device update: 503 twice.
    cloud.console.inject(FaultKind.ERROR_STATUS, at=4, times=2)
    clock = FakeClock()
    report = worker(registry, cloud, clock).drain()
    assert report.complete and report.placed == 3 and report.failures == 2
    assert len(clock.sleeps) == 2
    assert all(g == (GROUP,) for g in console_groups(cloud).values())

    # Gave up mid-placement: the devices stay pending, and the next drain re-imports and places them.
    more = device_ids(2, start=100)
    registry.outbox.enqueue_many(more, PRODUCT, group=GROUP)
    # Import, list groups (it exists now), then the first device update fails three times.
    cloud.console.inject(FaultKind.ERROR_STATUS, at=cloud.console.stats().requests + 3, times=3)
    report = worker(registry, cloud, FakeClock()).drain(max_failures=3)
    assert report.stopped is not None and "gave up after 3 failed requests" in report.stopped
    entries = {e.device_id: e for e in registry.outbox.entries(product=PRODUCT)}
    assert all(entries[d].state is OutboxState.PENDING for d in more)
    assert "group / name not set yet" in (entries[more[0]].last_error or "")
    report = worker(registry, cloud, FakeClock()).drain()
    assert report.complete and report.placed == 2
    assert all(console_groups(cloud)[d] == (GROUP,) for d in more)
    assert all(e.state is OutboxState.SYNCED for e in registry.outbox.entries(product=PRODUCT))


def test_a_token_that_cannot_create_groups_stops_and_names_the_scope(registry: Registry, cloud: Cloud) -> None:
    limited = "2" * 40
    cloud.console.add_token(SimToken(limited, scopes=frozenset({"devices:import", "groups:list"})))
    registry.outbox.enqueue_many(device_ids(2), PRODUCT, group=GROUP)
    report = worker(registry, cloud, FakeClock(), token=limited).drain()
    assert report.fatal is not None
    assert "needs the groups:create scope" in str(report.fatal)
    assert registry.outbox.counts(PRODUCT)[OutboxState.PENDING] == 2  # imported, not yet placed
    assert limited not in str(report.fatal)


def test_station_sync_names_devices_from_the_profile(tmp_path: Path, cloud: Cloud) -> None:
    ids = device_ids(2)
    with Registry(tmp_path / "station.db") as registry:
        registry.outbox.enqueue_many(ids, PRODUCT, group=GROUP)
    (tmp_path / "serials.csv").write_text(f"device_id,serial\n{ids[0]},P046-0001\n", encoding="utf-8")
    profile = tmp_path / "line.toml"
    profile.write_text(
        'station_id = "bench-1"\nbundle = "b.fwpkg"\nrequire_signature = false\n\n'
        f'[cloud]\nproduct = {PRODUCT}\nbase_url = "{cloud.url}"\n'
        'device_names = "serials.csv"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main,
        ["sync", "--db", str(tmp_path / "station.db"), "--profile", str(profile)],
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    assert "2 device(s) put into their group / named" in result.stdout
    devices = {d.id: d for d in cloud.console.state.devices[int(PRODUCT)]}
    assert devices[ids[0]].name == "P046-0001" and devices[ids[1]].name is None
    assert devices[ids[1]].groups == (GROUP,)
