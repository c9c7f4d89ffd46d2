"""Flash efficiency per family (issue 7 item 1): the station's wall time for one device against the
simulator's modelled lower bound for the same job.

For each family one simulated board (timing model on) is plugged into a running line: a real
LineRunner and job, a real station.store.Registry in a temporary folder. The figure is the wall time
from plugging the board in to the attempt being recorded (the line noticing it, identify, flash,
verify, restart, record); the bound is what the simulator's own timing model says the link and
flash need at the least for those images (``lower_bound``). Target: within 10% of the bound.
Run with `make bench` or `.venv/bin/python bench/flash_efficiency.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from _common import (
    ESP_BAUD,
    LINE_POLL_INTERVAL,
    argon_system_part,
    argon_user_part,
    esp_app,
    esp_plan,
    line,
    machine,
    particle_plan,
    photon_user_part,
    ratio_line,
)

from station.demo.simulated_bench import SimDeviceSpec
from station.devices.base import Family, FlashImage
from station.devices.esptool_adapter import precompress
from station.line.plan import JobPlan
from station.sim.dfu_device import SimulatedDfuDevice
from station.sim.esp_loader import SimulatedEsp
from station.sim.particle_serial import SimulatedSerialDevice

TARGET = 1.10


@dataclass(frozen=True)
class Case:
    label: str
    spec: SimDeviceSpec
    plan: JobPlan
    images: tuple[FlashImage, ...]


def cases() -> list[Case]:
    photon, system, app, esp = photon_user_part(), argon_system_part(), argon_user_part(), esp_app()
    return [
        Case(
            "Particle DFU, Photon user part 128 KiB",
            SimDeviceSpec(Family.PARTICLE_DFU, "photon"),
            particle_plan("photon", [photon]),
            (photon,),
        ),
        Case(
            f"Particle DFU, Argon system part {system.size // 1024} KiB",
            SimDeviceSpec(Family.PARTICLE_DFU, "argon"),
            particle_plan("argon", [system]),
            (system,),
        ),
        Case(
            f"Particle serial YModem, Argon app {app.size // 1024} KiB",
            SimDeviceSpec(Family.PARTICLE_SERIAL, "argon"),
            particle_plan("argon", [app]),
            (app,),
        ),
        Case(
            f"ESP32 app {esp.size // 1024} KiB, {ESP_BAUD} baud, compressed",
            SimDeviceSpec(Family.ESP, "esp32"),
            esp_plan([esp]),
            (esp,),
        ),
    ]


def lower_bound(sim: object, images: Sequence[FlashImage]) -> float:
    if isinstance(sim, SimulatedDfuDevice):
        # The job waits for the board to come back running the new firmware (the version check).
        return sim.lower_bound(images, until_running=True)
    if isinstance(sim, SimulatedSerialDevice):
        return sim.lower_bound([i.data for i in images])
    assert isinstance(sim, SimulatedEsp)
    return sim.lower_bound([(i.address, i.data) for i in images], baud=ESP_BAUD, stub=True, compress=True)


def run_case(case: Case, poll_interval: float, detail: bool) -> tuple[float, float, float, str]:
    """(wall seconds, bound seconds, modelled seconds the simulator charged, job phases)."""
    esp_options = None
    if case.plan.target.chip is not None:
        # What `station run` does for an ESP bundle (PreparedLine.esp_options): the profile's baud, the
        # bundle's chip (no detection), the images compressed once while the line waits for boards.
        esp_options = {"baud": ESP_BAUD, "chip": case.plan.target.chip}
        precompress([image.data for image in case.images])
    with line([(case.plan, {case.spec.family.value})], poll_interval=poll_interval, esp_options=esp_options) as lut:
        time.sleep(0.2)  # the runner is scanning an empty bench, as on a line waiting for boards
        (slot,) = lut.attach([case.spec])
        (outcome,) = lut.wait([slot], timeout=600)
        if not outcome.passed:
            raise SystemExit(f"{case.label}: the board failed: {outcome.message}")
        sim = lut.bench.simulator(slot)
        timing = sim.timing
        bound = lower_bound(sim, case.images)
        phases = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timing.by_kind.items()))
        overlapped = ", ".join(f"{k} {v:.2f}" for k, v in sorted(timing.overlapped_by_kind.items()))
        if overlapped:
            phases += f"; behind the wire: {overlapped}"
        if isinstance(sim, SimulatedEsp):
            parts = sim.bound_parts([(i.address, i.data) for i in case.images], baud=ESP_BAUD)
            phases += f"\n    bound = {parts.parts()}"
        if detail:
            t0 = outcome.attached_at
            for start, took, call, arg in lut.recorder.calls:
                print(f"      +{start - t0:7.3f} s  {call}({arg}) took {took * 1000:.1f} ms")
            print(f"      +{outcome.wall:7.3f} s  recorded")
        return outcome.wall, bound, timing.spent, phases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=1, help="runs per family; the median is shown")
    parser.add_argument("--poll-interval", type=float, default=LINE_POLL_INTERVAL, help="the line's scan interval")
    parser.add_argument("--only", default="", help="run only cases whose label contains this text")
    parser.add_argument("--detail", action="store_true", help="print each registry transition's time")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"line scan interval {args.poll_interval} s; figure = plug-in to attempt recorded, median of {args.repeat}")
    worst = 0.0
    for case in cases():
        if args.only and args.only.lower() not in case.label.lower():
            continue
        runs = [run_case(case, args.poll_interval, args.detail) for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in runs)
        bound = runs[0][1]
        print(ratio_line(case.label, wall, bound, TARGET))
        print(f"    simulator charged {runs[0][2]:.3f} s: {runs[0][3]}")
        worst = max(worst, wall / bound)
    print(f"worst ratio {worst:.3f} (target {TARGET:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
