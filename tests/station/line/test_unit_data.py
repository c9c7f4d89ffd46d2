"""[unit_data]: each simulated ESP32 board of a line gets its own serial number and NVS partition.

The bytes on each board's nvs partition are compared with what Espressif's generator CLI makes from
the values the registry recorded for that unit; a failed board's number goes back; kill -9 during a
run never yields a number twice (real processes, as the other kill -9 tests).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware_tools import keys
from firmware_tools.bundle import ReleaseInput, build_release
from firmware_tools.bundle.partition_table import Partition, build_partition_table
from firmware_tools.esp import build_app_image
from firmware_tools.esp.builder import build_bootloader_image
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.errors import InputError
from station.line.events import Event
from station.line.runner import LineRunner
from station.line_setup import prepare_line
from station.store import AttemptResult, Registry

STATION = [sys.executable, "-m", "station.cli"]
TABLE = [
    Partition("nvs", 1, 2, 0x9000, 0x6000, 0),
    Partition("phy_init", 1, 1, 0xF000, 0x1000, 0),
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
]


def _line(tmp_path: Path, unit_data: str, *, app_size: int = 2048) -> Path:
    key = keys.generate_key()
    images = [
        ReleaseInput("bootloader.bin", build_bootloader_image(chip="esp32", flash_size="4MB"), 0x1000),
        ReleaseInput("partitions.bin", build_partition_table(TABLE), 0x8000),
        ReleaseInput("app.bin", build_app_image(chip="esp32", payload_size=app_size), 0x10000),
    ]
    release = build_release(images, product_id=4242, product_version=3, key=key, product_name="acme")
    (tmp_path / "acme.fwpkg").write_bytes(release.bundle)
    (tmp_path / "release.pub").write_bytes(key.public.pem())
    profile = tmp_path / "line.toml"
    profile.write_text(
        'station_id = "line-7"\nbundle = "acme.fwpkg"\ntrusted_keys = ["release.pub"]\njob_timeout = 60\n'
        f"[unit_data]\n{unit_data}"
    )
    return profile


def _run_line(profile: Path, db: Path, spec: str, expected: int) -> SimulatedBench:
    line = prepare_line(profile)
    bench = SimulatedBench(timing=False, rng=random.Random(5))
    bench.attach_all(parse_simulate_spec(spec))
    events: list[Event] = []
    with Registry(db) as registry:
        runner = LineRunner([bench], line.plan, registry, events.append, poll_interval=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 180
        while runner.passed + runner.failed < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=60)
    assert runner.passed + runner.failed == expected
    return bench


def _generator_bytes(tmp_path: Path, unit: dict[str, object]) -> bytes:
    """What `python -m esp_idf_nvs_partition_gen generate` makes from the recorded rows."""
    rows = unit["rows"]
    assert isinstance(rows, list)
    source = tmp_path / "unit.csv"
    with source.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["key", "type", "encoding", "value"])
        out.writerow([unit["namespace"], "namespace", "", ""])
        for key, encoding, value in rows:
            out.writerow([key, "data", encoding, value])
    target = tmp_path / "unit.bin"
    size = unit["size"]
    assert isinstance(size, int)
    subprocess.run(
        [sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", str(source), str(target), hex(size)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return target.read_bytes()


def test_eight_boards_get_eight_serials_and_the_generators_bytes(tmp_path: Path) -> None:
    profile = _line(tmp_path, 'counter_start = 1\nserial_prefix = "SN"\n[unit_data.fixed]\nhw_rev = "B"\nbatch = 7\n')
    db = tmp_path / "station.db"
    with _run_line(profile, db, "esp32:8", 8) as bench:
        with Registry(db, create=False) as registry:
            history = registry.history()
            assert [a.result for a in history] == [AttemptResult.PASS] * 8
            serials = [a.unit_serial for a in history]
            assert sorted(s for s in serials if s) == [f"SN{n:06d}" for n in range(1, 9)]
            assert {s.state for s in registry.unit_serials()} == {"used"}
        for attempt in history:
            assert attempt.unit_data is not None
            unit = json.loads(attempt.unit_data)
            rows = {k: v for k, _enc, v in unit["rows"]}
            assert rows["serial"] == attempt.unit_serial
            assert (rows["product"], rows["product_ver"], rows["station"]) == ("4242", "3", "line-7")
            assert (rows["hw_rev"], rows["batch"]) == ("B", "7")
            assert (unit["partition"], unit["offset"], unit["size"]) == ("nvs", 0x9000, 0x6000)
            on_board = bench.read_flash(attempt.slot.port_path, 0x9000, 0x6000)
            assert on_board == _generator_bytes(tmp_path, unit)
    # `station history` shows each attempt's serial; --json carries the rows.
    shown = subprocess.run([*STATION, "history", "--db", str(db), "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert sorted(a["unit_serial"] for a in listed) == [f"SN{n:06d}" for n in range(1, 9)]
    assert all(a["unit_data"]["namespace"] == "factory" for a in listed)
    text = subprocess.run([*STATION, "history", "--db", str(db)], capture_output=True, text=True).stdout
    assert "serial SN000001" in text


def test_a_failed_board_gives_its_number_back_and_a_list_is_consumed_once(tmp_path: Path) -> None:
    (tmp_path / "serials.txt").write_text("# from the MES\nA-100\nA-101\nA-102\n")
    profile = _line(tmp_path, 'serial_list = "serials.txt"\n', app_size=100_000)
    db = tmp_path / "station.db"
    # The second board disconnects mid-write (after its number was reserved).
    _run_line(profile, db, "esp32:1,esp32!disconnect@2", 2).close()
    with Registry(db, create=False) as registry:
        by_result = {a.result: a for a in registry.history()}
        assert set(by_result) == {AttemptResult.PASS, AttemptResult.FAIL}
        states = {s.serial: s.state for s in registry.unit_serials()}
        used = [s for s, st in states.items() if st == "used"]
        assert len(used) == 1 and sorted(s for s, st in states.items() if st == "free") == sorted(
            {"A-100", "A-101", "A-102"} - set(used)
        )
    # The next run hands out the returned number first; nothing is handed out twice.
    _run_line(profile, db, "esp32:2", 2).close()
    with Registry(db, create=False) as registry:
        passed = [a.unit_serial for a in registry.history() if a.result is AttemptResult.PASS]
        assert len(passed) == 3 and len(set(passed)) == 3
        assert sorted(passed) == ["A-100", "A-101", "A-102"]
    # The list is used up: a fourth board fails (no number), and none is reused.
    _run_line(profile, db, "esp32:1", 1).close()
    with Registry(db, create=False) as registry:
        last = registry.history()[-1]
        assert last.result is AttemptResult.FAIL and "no unused serial number" in (last.error_message or "")


def test_the_profile_section_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exactly one of counter_start"):
        prepare_line(_line(tmp_path, "namespace = 'f'\n"))
    with pytest.raises(InputError, match="one the station writes itself"):
        prepare_line(_line(tmp_path, "counter_start = 1\n[unit_data.fixed]\nserial = 'x'\n"))
    with pytest.raises(InputError, match="unknown key"):
        prepare_line(_line(tmp_path, "counter_start = 1\nserail = 2\n"))
    ok = subprocess.run(
        [*STATION, "check", "--profile", str(_line(tmp_path, "counter_start = 10\n"))], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "unit data: serial (counter from 000010" in ok.stdout and "partition 'nvs' at 0x9000" in ok.stdout


@pytest.mark.slow
def test_kill_9_during_a_unit_data_run_never_hands_a_number_out_twice(tmp_path: Path) -> None:
    profile = _line(tmp_path, 'counter_start = 1\nserial_prefix = "K"\n', app_size=200_000)
    db = tmp_path / "station.db"
    args = [*STATION, "run", "--profile", str(profile), "--db", str(db), "--json", "--simulate", "esp32:4"]
    for _round in range(2):
        proc = subprocess.Popen([*args, "--duration", "120"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            # Killed while boards are being written: their numbers are reserved, some boards hold them.
            if '"event":"progress"' in line and '"phase":"write"' in line:
                break
            assert time.monotonic() < deadline, "no write started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    rerun = subprocess.run([*args, "--no-timing", "--duration", "6"], capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    with Registry(db, create=False) as registry:
        history = registry.history()
        reserved = [a.unit_serial for a in history if a.unit_serial is not None]
        assert len(reserved) == len(set(reserved))  # no number went to two attempts
        passed = [a.unit_serial for a in history if a.result is AttemptResult.PASS]
        assert len(passed) >= 4 and all(passed)
        # The kills struck after numbers were reserved: the test is about those.
        assert any(a.result is AttemptResult.INTERRUPTED and a.unit_serial for a in history)
        states = {s.serial: s for s in registry.unit_serials()}
        for attempt in history:
            if attempt.unit_serial is None:
                continue
            settled = states[attempt.unit_serial]
            if attempt.result is AttemptResult.INTERRUPTED:
                assert settled.state == "lost" and settled.attempt_id == attempt.id  # never reissued
            elif attempt.result is AttemptResult.PASS:
                assert settled.state == "used" and settled.attempt_id == attempt.id
        assert registry.check_consistency() == ()
