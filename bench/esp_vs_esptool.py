"""ESP against esptool, process against process (issue 17): `station flash` as a whole process against
`esptool write-flash` as a whole process, both talking to the same external `station sim esp`
process (an ESP32 with the timing model on, real-ROM answers: GET_SECURITY_INFO refused the way an
ESP32 ROM refuses it), with the same 1 MiB app and the same baud.

Runs are interleaved (station, esptool, station, esptool ...) so drift on the machine hits both
alike; min / median / max of each are printed, and the ratio of the medians. Target: station <= 0.95x
esptool. esptool is given `--chip esp32` (as `idf.py flash` does) and the station's default baud
(ESP-IDF's 460800); `station flash` finds the chip in the image.

Both whole-process figures include each tool's start-up; the bound of the write itself is printed
in its parts (wire, device work, fixed waits) so what each tool adds on the host can be read off.
Run with `.venv/bin/python bench/esp_vs_esptool.py [--repeat N]` (each run is ~25 s of simulated
serial time; the machine is shared, keep N small).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from _common import esp_app, machine

from station.devices.base import FlashImage
from station.devices.esp import DEFAULT_BAUD
from station.sim.esp_loader import bound_parts

BIN = Path(sys.executable).parent
ESPTOOL = BIN / "esptool"
STATION = BIN / "station"
TARGET = 0.95


@contextmanager
def external_sim(chip: str = "esp32") -> Iterator[str]:
    """`station sim esp` in its own process; yields its socket:// URL."""
    proc = subprocess.Popen(
        [str(STATION), "sim", "esp", "--listen", "127.0.0.1:0", "--chip", chip, "--mac", "24:0a:c4:12:34:56"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        if "listening on" not in banner:
            raise SystemExit(f"station sim esp did not start: {banner}{proc.stderr.read() if proc.stderr else ''}")
        yield banner.split("listening on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def station_once(url: str, path: Path) -> float:
    took, proc = _timed([str(STATION), "flash", str(path), "--port", url, "--json"])
    if proc.returncode != 0:
        raise SystemExit(f"station flash failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    result = json.loads(proc.stdout)
    if result["result"] != "pass" or not result["verified"]:
        raise SystemExit(f"station flash: {result}")
    return took


def esptool_once(url: str, path: Path, address: int, baud: int) -> float:
    cmd = [str(ESPTOOL), "--chip", "esp32", "--port", url, "--baud", str(baud), "write-flash", hex(address), str(path)]
    took, proc = _timed(cmd)
    if proc.returncode != 0 or "Hash of data verified" not in proc.stdout:
        raise SystemExit(f"esptool failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return took


def startup(cmd: list[str]) -> float:
    return min(_timed(cmd)[0] for _ in range(3))


def spread(values: Sequence[float]) -> str:
    return f"min {min(values):7.3f}  median {statistics.median(values):7.3f}  max {max(values):7.3f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="station flash vs esptool write-flash, process against process")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="the baud both tools flash at")
    args = parser.parse_args(argv)
    image: FlashImage = esp_app()
    bound = bound_parts([(image.address, image.data)], baud=args.baud, stub=True, compress=True)
    print(f"machine: {machine()}")
    print(f"image: ESP32 app {image.size} bytes at {image.address:#x}, {args.baud} baud, compressed")
    print(f"bound of the write + MD5 (no sync/register traffic): {bound.total:.3f} s = {bound.parts()}")
    station: list[float] = []
    esptool: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, external_sim() as url:
        path = Path(tmp) / image.name
        path.write_bytes(image.data)
        for _ in range(args.repeat):
            station.append(station_once(url, path))
            esptool.append(esptool_once(url, path, image.address, args.baud))
    s, e = statistics.median(station), statistics.median(esptool)
    pairs = [a / b for a, b in zip(station, esptool, strict=True)]
    print(f"station flash, whole process:       {spread(station)}")
    print(f"esptool write-flash, whole process: {spread(esptool)}")
    print(f"  per pair station/esptool: {', '.join(f'{r:.3f}' for r in pairs)}")
    print(
        f"  start-up alone: `station --help` {startup([str(STATION), '--help']):.3f} s,"
        f" `esptool version` {startup([str(ESPTOOL), 'version']):.3f} s"
    )
    verdict = "meets" if s / e <= TARGET else "misses"
    print(f"station / esptool = {s / e:.3f} (medians; {verdict} target <= {TARGET:.2f})")
    print(f"station / bound = {s / bound.total:.3f}, esptool / bound = {e / bound.total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
