"""`station devices`: simulated benches through the CLI, JSON and text, permission problems, a real process."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.discovery.usb_dfu import UsbParticleSource
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend
from tests.station.discovery.images import particle_image

NO_TIMING = {"BENCHFLASH_SIM_TIMING": "0"}


def _invoke(*args: str, obj: dict[str, object] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=NO_TIMING, obj=obj)
    return result.exit_code, result.stdout, result.stderr


def test_simulated_devices_as_json() -> None:
    code, out, _ = _invoke("devices", "--simulate", "argon-dfu:2,esp32:1", "--json")
    assert code == 0
    document = json.loads(out)
    devices = document["devices"]
    assert [d["port_path"] for d in devices] == ["sim-1", "sim-2", "sim-3"]
    assert [d["family"] for d in devices] == ["particle-dfu", "particle-dfu", "esp"]
    assert [d["mode"] for d in devices] == ["dfu", "dfu", "bootloader"]
    assert [d["platform"] for d in devices] == ["argon", "argon", "ESP32"]
    assert all(re.fullmatch(r"[0-9a-f]{24}", d["device_id"]) for d in devices[:2])
    assert devices[0]["device_id"] != devices[1]["device_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", devices[2]["device_id"])
    assert devices[2]["mac"].replace(":", "") == devices[2]["device_id"]
    assert (devices[0]["vid"], devices[0]["pid"]) == ("2b04", "d00c")
    # In DFU mode the USB serial-number string is the device ID (dfu-dfuse.md §9.2).
    assert [d["usb_serial_number"] for d in devices[:2]] == [d["device_id"] for d in devices[:2]]
    assert all(d["error"] is None for d in devices)
    assert document["problems"] == []


def test_the_same_spec_attaches_the_same_boards_so_a_listed_id_can_be_flashed(tmp_path: Path) -> None:
    spec = "argon-dfu:2,esp32:1,photon-serial:1"
    listings = [json.loads(_invoke("devices", "--simulate", spec, "--json")[1])["devices"] for _ in range(2)]
    ids = [[d["device_id"] for d in listing] for listing in listings]
    assert ids[0] == ids[1] and len(set(ids[0])) == 4
    module = tmp_path / "app.bin"
    module.write_bytes(particle_image("argon").data)
    code, out, err = _invoke("flash", str(module), "--simulate", spec, "--device", ids[0][1])
    assert code == 0, err
    assert out.startswith("PASS sim-2 argon " + ids[0][1])


def test_text_listing_has_one_line_per_device() -> None:
    code, out, _ = _invoke("devices", "--simulate", "photon-serial,esp32c3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("sim-1") and "particle-serial" in lines[0] and "photon" in lines[0]
    assert lines[1].startswith("sim-2") and "ESP32-C3" in lines[1] and "mac " in lines[1]


def test_a_bad_spec_is_a_usage_error_naming_it() -> None:
    code, out, err = _invoke("devices", "--simulate", "argon-dfu,argn-serial:2")
    assert code == 2
    assert out == ""
    assert "argn-serial" in err and "argon-serial" in err


def test_a_permission_problem_is_listed_with_the_fix_and_exits_1() -> None:
    with SimulatedBench(timing=False, rng=random.Random(4)) as bench:
        denied, fine = bench.attach_all(parse_simulate_spec("boron-dfu:2"))
        sim = bench.simulator(denied)
        sim.access_denied = True  # type: ignore[union-attr]
        code, out, _ = _invoke("devices", "--json", obj={"sources": [bench]})
        text_code, text, _ = _invoke("devices", obj={"sources": [bench]})
    assert code == 1 and text_code == 1
    by_slot = {d["port_path"]: d for d in json.loads(out)["devices"]}
    assert by_slot[denied]["error"]["reason"] == "permission"
    assert "udev" in by_slot[denied]["error"]["hint"]
    assert by_slot[denied]["device_id"] is None
    assert by_slot[fine]["error"] is None and by_slot[fine]["platform"] == "boron"
    assert "permission denied" in text and "udev" in text


def test_listing_never_switches_a_normal_mode_board() -> None:
    bus = SimulatedUsbBackend()
    sim = bus.plug("argon", "ab" * 12, port_path="1-3", mode="normal", timing=TimingModel(enabled=False))
    code, out, _ = _invoke("devices", "--json", obj={"sources": [UsbParticleSource(backend=bus)]})
    assert code == 0
    (device,) = json.loads(out)["devices"]
    assert (device["port_path"], device["mode"], device["device_id"]) == ("1-3", "normal", "ab" * 12)
    assert device["firmware"] is not None and device["firmware"].startswith("Device OS")
    assert sim.usb_mode.value == "normal"


def test_real_process() -> None:
    env = dict(os.environ, **NO_TIMING)
    done = subprocess.run(
        [sys.executable, "-m", "station.cli", "devices", "--simulate", "argon-dfu,esp32s3", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [d["platform"] for d in json.loads(done.stdout)["devices"]] == ["argon", "ESP32-S3"]
