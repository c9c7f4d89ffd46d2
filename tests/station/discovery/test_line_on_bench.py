"""The line runner on the simulated bench: mixed families at once, a wrong platform, a fault and a re-plug."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.devices.base import FlashImage
from station.line.events import Event
from station.line.plan import JobPlan, Target
from station.line.runner import LineRunner
from station.store import AttemptResult, Registry

from .images import esp_image, particle_image


def _run_until(runner: LineRunner, done: Callable[[], bool], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        runner.poll()
        if done():
            return
        time.sleep(0.02)
    raise AssertionError("line did not settle in time")


def _finished(registry: Registry) -> list[tuple[str, str, str | None]]:
    return sorted(
        (a.slot.port_path, a.result.value, a.error_code)
        for a in registry.history()
        if a.result is not AttemptResult.RUNNING
    )


def _sink(events: list[dict[str, object]]) -> Callable[[Event], None]:
    lock = threading.Lock()

    def sink(event: Event) -> None:
        with lock:
            events.append(event.to_json())

    return sink


def test_eight_boards_of_mixed_families_pass_with_the_right_contents(tmp_path: Path) -> None:
    argon, esp = particle_image("argon", size=24 * 1024), esp_image("esp32", size=60_000)
    particle_plan = JobPlan("line-p", Target(platform_id=12, platform_name="argon"), (argon,), job_timeout=60)
    esp_plan = JobPlan("line-e", Target(chip="esp32"), (esp,), job_timeout=60)
    registry = Registry(tmp_path / "station.db")
    events: list[dict[str, object]] = []
    with (
        SimulatedBench(timing=False, rng=random.Random(1)) as particle_bench,
        SimulatedBench(timing=False, rng=random.Random(2)) as esp_bench,
    ):
        particle_slots = particle_bench.attach_all(parse_simulate_spec("argon-dfu:2,argon-normal,argon-serial:2"))
        esp_slots = esp_bench.attach_all(parse_simulate_spec("esp32:3"))
        runners = [
            LineRunner([particle_bench], particle_plan, registry, _sink(events), poll_interval=0.01),
            LineRunner([esp_bench], esp_plan, registry, _sink(events), poll_interval=0.01),
        ]
        threads = [
            threading.Thread(
                target=_run_until, args=(r, lambda r=r, n=n: r.passed + r.failed >= n and r.running() == 0)
            )
            for r, n in zip(runners, (5, 3), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in runners:
            r.drain()

        assert [(r.passed, r.failed) for r in runners] == [(5, 0), (3, 0)]
        ids = {a.slot.port_path + a.context.station_id: a.device_id for a in registry.history()}
        for slot in particle_slots:
            assert particle_bench.holds(slot, argon), slot
            assert ids[slot + "line-p"] == particle_bench.device_id(slot)
        for slot in esp_slots:
            assert esp_bench.holds(slot, esp), slot
            assert ids[slot + "line-e"] == esp_bench.device_id(slot)
    assert len([e for e in events if e["event"] == "passed"]) == 8
    assert registry.check_consistency() == ()


def test_wrong_platform_and_a_mid_write_fault_fail_and_a_replug_retries(tmp_path: Path) -> None:
    argon: FlashImage = particle_image("argon", size=24 * 1024)
    plan = JobPlan("line-1", Target(platform_id=12, platform_name="argon"), (argon,), job_timeout=30)
    registry = Registry(tmp_path / "station.db")
    events: list[dict[str, object]] = []
    with SimulatedBench(timing=False, rng=random.Random(3)) as bench:
        good, photon, faulty = bench.attach_all(parse_simulate_spec("argon-dfu,photon-dfu,argon-dfu!disconnect@3"))
        runner = LineRunner([bench], plan, registry, _sink(events), poll_interval=0.01)
        _run_until(runner, lambda: len(_finished(registry)) >= 3 and runner.running() == 0)
        assert _finished(registry) == [
            (good, "pass", None),
            (photon, "fail", "wrong-target"),
            (faulty, "fail", "disconnected"),
        ]
        # Nothing was written to the photon: where its own app would go is still erased.
        photon_app = particle_image("photon", size=24 * 1024)
        assert bench.read_flash(photon, photon_app.address, photon_app.size) == b"\xff" * photon_app.size

        # Hotplug: pull the failed board, plug it back in; the line retries it by itself.
        bench.detach(faulty)
        runner.poll()
        bench.reattach(faulty)
        late = bench.attach(parse_simulate_spec("argon-serial")[0])
        _run_until(runner, lambda: len(_finished(registry)) >= 5 and runner.running() == 0)
        runner.drain()
        results = _finished(registry)
        assert (faulty, "pass", None) in results and (late, "pass", None) in results
        assert bench.holds(faulty, argon) and bench.holds(late, argon) and bench.holds(good, argon)
    kinds = [(e["event"], e["slot"]) for e in events]
    assert ("detached", faulty) in kinds
    assert registry.check_consistency() == ()
