"""Parallel scaling (issues 7 and 17): N simulated boards at once against one board, per family.

``--family esp`` and ``--family serial`` run the boards in simulator host processes
(``bench/_sim_host.py``, ``--sim-processes`` of them), out of the station's process, reached over TCP
(ESP, as esptool reaches ``station sim esp``) and ptys (Particle listening mode): what this process
spends is the station's own work, as with real boards. ``--family dfu`` and ``--family mixed``
(Argon DFU, Argon serial and ESP32 in turn) still run their boards in this process: the simulated
USB backend has no transport to another process yet, so their ratios include the simulators' CPU.

All N boards are plugged in at once; the makespan is from then until the last attempt is recorded,
against one board of the same family alone. Devices per hour come from the handling time per board:
one person plugs and unplugs boards one at a time (``--handling`` seconds each), so a line does at
most 3600 / handling boards an hour, and N slots each busy for handling + their own board time give
N x 3600 / (handling + board time); the figure is the lower of the two.
Targets (issue 17): at 64 boards, <= 1.3x one for ESP and serial, <= 1.2x for DFU.
Run with `make bench` or `.venv/bin/python bench/parallel_scaling.py --family esp --counts 1,64 --json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence

from _common import (
    LINE_POLL_INTERVAL,
    ExternalBench,
    argon_user_part,
    attach_external,
    esp_app,
    esp_plan,
    external_line,
    line,
    machine,
    particle_plan,
)

from station.demo.simulated_bench import SimDeviceSpec
from station.devices.base import Family

TARGETS = {"esp": 1.3, "serial": 1.3, "dfu": 1.2}
HANDLING_SECONDS = 20.0  # a person plugging a board in and taking it out
ESP_APP_BYTES = 256 * 1024
MIX = (
    SimDeviceSpec(Family.PARTICLE_DFU, "argon"),
    SimDeviceSpec(Family.PARTICLE_SERIAL, "argon"),
    SimDeviceSpec(Family.ESP, "esp32"),
)
OUT_OF_PROCESS = {"esp", "serial"}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _check(lut: object, outcomes: list) -> float:  # type: ignore[type-arg]
    failed = [o for o in outcomes if not o.passed]
    if failed:
        raise SystemExit(f"{len(failed)} boards failed, e.g. {failed[0].slot}: {failed[0].message}")
    problems = lut.registry.check_consistency()  # type: ignore[attr-defined]
    if problems:
        raise SystemExit(f"registry inconsistent after the run: {problems[:3]}")
    return max(o.recorded_at for o in outcomes if o.recorded_at is not None)


def run_external(family: str, n: int, processes: int, poll_interval: float) -> tuple[float, list[float], float]:
    """Makespan, per-board times and this process's CPU seconds for ``n`` out-of-process boards."""
    plan = (
        esp_plan([esp_app(size=ESP_APP_BYTES)], station="bench-esp32")
        if family == "esp"
        else particle_plan("argon", [argon_user_part()], station="bench-argon")
    )
    bench = ExternalBench(family, n, min(processes, n))
    try:
        with external_line(plan, bench, poll_interval=poll_interval) as lut:
            time.sleep(0.2)
            cpu0, start = _cpu(), time.monotonic()
            slots = attach_external(lut, bench, n)
            outcomes = lut.wait(slots, timeout=900)
            end = _check(lut, outcomes)
            return end - start, [o.wall for o in outcomes], _cpu() - cpu0
    finally:
        bench.close()


def run_in_process(specs: Sequence[SimDeviceSpec], poll_interval: float) -> tuple[float, list[float], float]:
    argon, esp = argon_user_part(), esp_app(size=ESP_APP_BYTES)
    plans = [
        (
            particle_plan("argon", [argon], station="bench-argon"),
            {Family.PARTICLE_DFU.value, Family.PARTICLE_SERIAL.value},
        ),
        (esp_plan([esp], station="bench-esp32"), {Family.ESP.value}),
    ]
    with line(plans, poll_interval=poll_interval) as lut:
        time.sleep(0.2)
        cpu0, start = _cpu(), time.monotonic()
        slots = lut.attach(specs)
        outcomes = lut.wait(slots, timeout=900)
        end = _check(lut, outcomes)
        return end - start, [o.wall for o in outcomes], _cpu() - cpu0


def devices_per_hour(n: int, board_seconds: float, handling: float) -> float:
    """Boards an hour with one person handling each board for ``handling`` s and ``n`` slots."""
    return min(3600.0 / handling, n * 3600.0 / (handling + board_seconds))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="makespan of N simulated boards at once against one")
    parser.add_argument("--family", choices=("esp", "serial", "dfu", "mixed"), default="mixed")
    parser.add_argument("--counts", default="1,4,16,64", help="board counts to run, comma-separated")
    parser.add_argument("--poll-interval", type=float, default=LINE_POLL_INTERVAL, help="the line's scan interval")
    parser.add_argument("--handling", type=float, default=HANDLING_SECONDS, help="seconds to plug and unplug a board")
    parser.add_argument("--sim-processes", type=int, default=4, help="simulator host processes (esp, serial)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",")} | {1})

    def once(n: int) -> tuple[float, list[float], float]:
        if args.family in OUT_OF_PROCESS:
            return run_external(args.family, n, args.sim_processes, args.poll_interval)
        if args.family == "dfu":
            return run_in_process([MIX[0]] * n, args.poll_interval)
        return run_in_process([MIX[i % len(MIX)] for i in range(n)], args.poll_interval)

    results = {n: once(n) for n in counts}
    baseline = results[1][0]
    report = {
        "family": args.family,
        "simulators": "out-of-process" if args.family in OUT_OF_PROCESS else "in-process",
        "machine": machine(),
        "handling_seconds": args.handling,
        "makespan": {str(n): round(r[0], 3) for n, r in results.items()},
        "ratios": {str(n): round(r[0] / baseline, 3) for n, r in results.items()},
        "mean_board_seconds": {str(n): round(statistics.fmean(r[1]), 3) for n, r in results.items()},
        "station_cpu_seconds": {str(n): round(r[2], 2) for n, r in results.items()},
        "devices_per_hour": {
            str(n): round(devices_per_hour(n, statistics.fmean(r[1]), args.handling)) for n, r in results.items()
        },
        "target_at_64": TARGETS.get(args.family),
        "pid": os.getpid(),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"machine: {report['machine']}; family {args.family}, simulators {report['simulators']}")
    print(f"{'boards':>6} {'makespan':>9} {'x one':>6} {'mean/board':>10} {'station cpu':>11} {'devices/h':>9}")
    for n in counts:
        makespan, walls, cpu = results[n]
        print(
            f"{n:>6} {makespan:8.2f}s {makespan / baseline:6.2f} {statistics.fmean(walls):9.2f}s"
            f" {cpu:10.1f}s {report['devices_per_hour'][str(n)]:9}"
        )
    print(f"devices/h = min(3600 / handling, slots x 3600 / (handling + board time)); handling {args.handling:g} s")
    target = TARGETS.get(args.family)
    if target is not None and 64 in results:
        ratio = results[64][0] / baseline
        print(f"64 boards: {ratio:.2f}x one ({'meets' if ratio <= target else 'misses'} target {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
