"""ESP against esptool (issue 7 item 2): the station's time per ESP device against the unmodified
``esptool write-flash`` CLI alone, on the same simulator, with the same image and baud.

Both runs use a fresh simulated ESP32 (timing model on) served on a TCP port. The station's figure is
a board plugged into a running line until its attempt is recorded (identify, flash, verify, restart,
record in a real registry); esptool's is the wall time of ``esptool --port socket://... --baud B
write-flash ADDR app.bin`` in its own process (connect, stub, flash, its MD5 check, reset). Target:
the station no slower. Run with `make bench` or `.venv/bin/python bench/esp_vs_esptool.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import ESP_BAUD, LINE_POLL_INTERVAL, esp_app, esp_plan, line, machine

from station.demo.simulated_bench import SimDeviceSpec
from station.devices.base import Family, FlashImage
from station.sim.esp_loader import SimulatedEsp
from station.sim.timing import TimingModel

ESPTOOL = Path(sys.executable).with_name("esptool")


def station_once(image: FlashImage, poll_interval: float) -> float:
    with line([(esp_plan([image]), {Family.ESP.value})], poll_interval=poll_interval) as lut:
        time.sleep(0.2)
        (slot,) = lut.attach([SimDeviceSpec(Family.ESP, "esp32")])
        (outcome,) = lut.wait([slot], timeout=600)
        if not outcome.passed:
            raise SystemExit(f"station: the board failed: {outcome.message}")
        sim = lut.bench.simulator(slot)
        assert isinstance(sim, SimulatedEsp)
        if sim.read_flash(image.address, image.size) != image.data:
            raise SystemExit("station: the flash does not hold the image")
        return outcome.wall


def esptool_once(image: FlashImage, path: Path) -> float:
    with SimulatedEsp("esp32", timing=TimingModel(enabled=True)) as sim:
        url = sim.serve_tcp()
        cmd = [str(ESPTOOL), "--port", url, "--baud", str(ESP_BAUD), "write-flash", hex(image.address), str(path)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"esptool failed ({proc.returncode}): {proc.stdout[-500:]}{proc.stderr[-500:]}")
        if sim.read_flash(image.address, image.size) != image.data:
            raise SystemExit("esptool: the flash does not hold the image")
        return took


def startup() -> float:
    start = time.perf_counter()
    subprocess.run([str(ESPTOOL), "version"], capture_output=True, check=True)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="station vs esptool write-flash on the ESP simulator")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians are compared")
    parser.add_argument("--poll-interval", type=float, default=LINE_POLL_INTERVAL, help="the line's scan interval")
    args = parser.parse_args(argv)
    image = esp_app()
    print(f"machine: {machine()}")
    print(
        f"image: ESP32 app {image.size} bytes at {image.address:#x}, {ESP_BAUD} baud, compressed; "
        f"median of {args.repeat}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / image.name
        path.write_bytes(image.data)
        station, esptool = [], []
        for _ in range(args.repeat):  # interleaved, so drift on the machine hits both alike
            station.append(station_once(image, args.poll_interval))
            esptool.append(esptool_once(image, path))
    s, e = statistics.median(station), statistics.median(esptool)
    boot = startup()
    print(f"station, plug-in to recorded (identify, flash, verify, restart, record): {s:7.3f} s  {station}")
    print(f"esptool write-flash, whole process:                                     {e:7.3f} s  {esptool}")
    print(f"  (esptool's process start-up alone, `esptool version`: {boot:.3f} s)")
    verdict = "meets" if s <= e else "misses"
    print(f"station / esptool = {s / e:.3f}  ({verdict} target: no slower, <= 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
