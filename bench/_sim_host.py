"""A simulator host for the benchmarks: N simulated boards of one family in this process, out of the
station's, reached over the same transports real boards use (a TCP serial bridge for ESP, a pty for
Particle listening mode).

Prints one JSON line per board, ``{"port": ..., "family": ...}``, then ``{"ready": true}``, and
serves until its standard input closes (the bench holds the pipe; when the bench dies, so does this).
Usage: python bench/_sim_host.py esp|serial COUNT [--no-timing]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    family, count = sys.argv[1], int(sys.argv[2])
    timing = "--no-timing" not in sys.argv[3:]
    from station.sim.timing import TimingModel

    stops = []
    folder = Path(tempfile.mkdtemp(prefix="bench-sim-host-"))
    try:
        for n in range(count):
            if family == "esp":
                from station.sim.esp_loader import SimulatedEsp

                esp = SimulatedEsp("esp32", None, timing=TimingModel(enabled=timing))
                port = esp.serve_tcp("127.0.0.1", 0)
                stops.append(esp.stop)
            elif family == "serial":
                from station.sim.particle_serial import SimulatedSerialDevice

                board = SimulatedSerialDevice("argon", None, timing=TimingModel(enabled=timing), link=folder / f"b{n}")
                board.start()
                port = str(folder / f"b{n}")
                stops.append(board.stop)
            else:
                raise SystemExit(f"unknown family {family!r}: esp or serial")
            print(json.dumps({"port": port, "family": family}), flush=True)
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.read()  # until the bench closes the pipe
    finally:
        for stop in stops:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
