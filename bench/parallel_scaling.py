"""Parallel scaling (issue 7 item 3): 1, 4, 8, 16 and 32 simulated boards of mixed families at once.

Boards are Argon DFU, Argon serial (YModem) and ESP32, in turn, on one simulated bench with the
timing model on; two line runners (the Argon plan and the ESP32 plan) scan it and record into one
real registry, as `station run` would with two lines. All N boards are plugged in at once; the
makespan is from then until the last attempt is recorded. The baseline ("1") is the slowest of
the three families flashed alone, so the ratio is what running N at once costs over the longest
single job. Target: 16 boards within 1.25x of one. Devices per hour are projected with a stated
handling time per board (plugging and unplugging).
Run with `make bench` or `.venv/bin/python bench/parallel_scaling.py [--counts 1,4,8,16,32]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from _common import LINE_POLL_INTERVAL, argon_user_part, esp_app, esp_plan, line, machine, particle_plan

from station.demo.simulated_bench import SimDeviceSpec
from station.devices.base import Family

TARGET_AT_16 = 1.25
HANDLING_SECONDS = 20.0  # a person plugging a board in and taking it out
ESP_APP_BYTES = 256 * 1024
MIX = (
    SimDeviceSpec(Family.PARTICLE_DFU, "argon"),
    SimDeviceSpec(Family.PARTICLE_SERIAL, "argon"),
    SimDeviceSpec(Family.ESP, "esp32"),
)


def run(specs: Sequence[SimDeviceSpec], poll_interval: float) -> tuple[float, list[float]]:
    """Makespan of ``specs`` plugged in at once, and each board's own time (plug-in to recorded)."""
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
        start = time.monotonic()
        slots = lut.attach(specs)
        outcomes = lut.wait(slots, timeout=900)
        failed = [o for o in outcomes if not o.passed]
        if failed:
            raise SystemExit(f"{len(failed)} boards failed, e.g. {failed[0].slot}: {failed[0].message}")
        problems = lut.registry.check_consistency()
        if problems:
            raise SystemExit(f"registry inconsistent after the run: {problems[:3]}")
        end = max(o.recorded_at for o in outcomes if o.recorded_at is not None)
        return end - start, [o.wall for o in outcomes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="makespan of N mixed simulated boards at once")
    parser.add_argument("--counts", default="1,4,8,16,32", help="board counts to run, comma-separated")
    parser.add_argument("--poll-interval", type=float, default=LINE_POLL_INTERVAL, help="the line's scan interval")
    parser.add_argument("--handling", type=float, default=HANDLING_SECONDS, help="seconds to plug and unplug a board")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    print(f"machine: {machine()}")
    print(
        f"mix: Argon DFU (128 KiB app), Argon serial YModem (128 KiB app), ESP32 ({ESP_APP_BYTES // 1024} KiB app, "
        f"921600 baud) in turn; handling {args.handling:g} s per board"
    )
    singles = []
    for spec in MIX:
        took, _ = run([spec], args.poll_interval)
        singles.append(took)
        print(f"  alone: {spec.kind:<14} {took:7.3f} s")
    baseline = max(singles)
    print(
        f"{'boards':>6} {'makespan':>9} {'x one':>6} {'mean/board':>10} {'devices/h':>9}"
        f"  (target at 16: <= {TARGET_AT_16})"
    )
    verdict = ""
    for n in counts:
        specs = [MIX[i % len(MIX)] for i in range(n)]
        if n == 1:
            makespan, walls = baseline, [baseline]
        else:
            makespan, walls = run(specs, args.poll_interval)
        ratio = makespan / baseline
        per_hour = n * 3600 / (makespan + args.handling)
        print(f"{n:>6} {makespan:8.2f}s {ratio:6.2f} {sum(walls) / len(walls):9.2f}s {per_hour:9.0f}")
        if n == 16:
            verdict = (
                f"16 boards: {ratio:.2f}x one ({'meets' if ratio <= TARGET_AT_16 else 'misses'} target {TARGET_AT_16})"
            )
    print("devices/h = boards x 3600 / (makespan + handling): every slot's board swapped once per round")
    print(f"one person handling boards one at a time caps a line at {3600 / args.handling:.0f} devices/h")
    if verdict:
        print(verdict)
    print(f"cpu time of this process: {sum(os.times()[:2]):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
