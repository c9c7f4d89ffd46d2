"""Serial-number scans on a simulated line with scan = "required": boards wait for their label, the
scan on stdin names the slot, a reused serial fails that board, the mobile secret is never kept,
the sync names each device by its serial, and a kill -9 mid-write loses no scan-to-device link."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.line.scan import ScanDesk, ScanRejected, serial_from_code
from station.store import AttemptResult, Registry
from tests.station.test_cloud_fixtures import PRODUCT, TOKEN, Cloud, cloud_fixture  # noqa: F401
from tests.station.trace.conftest import events, profile, release

STATION = [sys.executable, "-m", "station.cli"]
SECRET = "MOBSECRET7Q"


def test_only_the_serial_of_a_code_is_kept() -> None:
    assert serial_from_code(f"P046AK8AAA000123 {SECRET}\r\n") == "P046AK8AAA000123"
    assert serial_from_code("SN-42") == "SN-42"
    for bad in ("", "   ", f"!bad {SECRET}", "x" * 600):
        try:
            serial_from_code(bad)
        except ScanRejected as exc:
            assert SECRET not in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_a_scan_goes_to_the_named_slot_else_to_the_board_that_began_waiting_last() -> None:
    ticks = iter(range(100))
    linked: list[tuple[int, str, str]] = []
    desk = ScanDesk(lambda *link: linked.append(link), monotonic=lambda: float(next(ticks)))
    got: dict[str, str | None] = {}
    never = threading.Event()

    def wait(slot: str, label: str) -> None:
        got[slot] = desk.wait(slot, label, int(slot[-1]), f"dev{slot[-1]}", never, poll=0.01)

    threads = []
    for slot, label in (("1-1", "A1"), ("1-2", "A2")):
        t = threading.Thread(target=wait, args=(slot, label))
        t.start()
        threads.append(t)
        while not desk.is_waiting(slot):
            time.sleep(0.005)
    assert desk.waiting() == ["1-2", "1-1"]
    assert desk.offer(f"SN-1 {SECRET}", "A1") == ("1-1", "SN-1")  # by label
    assert desk.offer("SN-2") == ("1-2", "SN-2")  # the one waiting
    for t in threads:
        t.join(5)
    assert got == {"1-1": "SN-1", "1-2": "SN-2"}
    assert linked == [(1, "SN-1", "dev1"), (2, "SN-2", "dev2")]  # committed by the scan, in its order
    for slot, why in ((None, "no board is waiting"), ("Z9", "slot Z9 is not waiting")):
        try:
            desk.offer("SN-3", slot)
        except ScanRejected as exc:
            assert why in str(exc)
        else:
            raise AssertionError("a scan with nobody waiting was accepted")


def _scan_profile(tmp_path: Path, cloud_url: str | None = None) -> Path:
    extra = 'scan = "required"\n[slots]\n"sim-1" = "A1"\n"sim-2" = "A2"\n"sim-3" = "A3"\n"sim-4" = "A4"\n'
    if cloud_url is not None:
        extra += f'[cloud]\nproduct = {PRODUCT}\nbase_url = "{cloud_url}"\ngroup = false\n'
    return profile(tmp_path, release(tmp_path, 7), extra=extra)


def test_scan_required_line_links_waits_and_refuses_a_reused_serial(tmp_path: Path, cloud: Cloud) -> None:
    db = tmp_path / "station.db"
    lines = [
        json.dumps({"scan": f"P046AAA0001 {SECRET}", "slot": "A1"}),
        json.dumps({"scan": f"P046AAA0002 {SECRET}", "slot": "sim-2"}),  # a port path works too
        json.dumps({"scan": f"P046AAA0001 {SECRET}", "slot": "A4"}),  # the first board's sticker again
        "!! not a label",  # a plain line that is no serial number
        # A3 gets no scan: it waits, and gives up unwritten when the line stops.
    ]
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--profile",
            str(_scan_profile(tmp_path, cloud.url)),
            "--db",
            str(db),
            "--operator",
            "ana",
            "--json",
            "--no-timing",
            "--simulate",
            "argon-dfu:4",
            "--duration",
            "4",
        ],
        input="\n".join(lines) + "\n",
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},  # the run's background sync imports and names them
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    seen = events(result.output)
    wanted = {e["label"] for e in seen if e["event"] == "scan-wanted"}
    assert wanted == {"A1", "A2", "A3", "A4"}
    assert all(e["message"] == "scan the unit's label" for e in seen if e["event"] == "scan-wanted")
    outcome = {e["label"]: e for e in seen if e["event"] in ("passed", "failed")}
    assert outcome["A1"]["event"] == "passed" and outcome["A2"]["event"] == "passed"
    first_device = outcome["A1"]["device_id"]
    assert outcome["A4"]["event"] == "failed" and outcome["A4"]["reason"] == "serial-in-use"
    assert f"serial number P046AAA0001 already used by {first_device} on " in str(outcome["A4"]["message"])
    assert outcome["A3"]["event"] == "failed" and "before this board's label was scanned" in str(
        outcome["A3"]["message"]
    )
    refused = [e for e in seen if e["event"] == "scan-refused"]
    assert len(refused) == 1 and "does not start with a serial number" in str(refused[0]["message"])
    # Nothing was written to the boards that failed on their scan.
    phases = {e["label"] for e in seen if e["event"] == "progress" and e["phase"] == "write"}
    assert phases == {"A1", "A2"}

    with Registry(db, create=False) as registry:
        assert registry.trace.serial_of(str(first_device)) == "P046AAA0001"
        assert registry.trace.serial_of(str(outcome["A2"]["device_id"])) == "P046AAA0002"
        scans = registry.audit.entries(action="scan")
        assert {e.subject for e in scans} == {first_device, outcome["A2"]["device_id"]}
        synced_in_run = registry.audit.entries(action="sync")
        assert sum(json.loads(e.after or "{}")["devices"] for e in synced_in_run) == 2
    for path in (p for p in tmp_path.glob("station.db*") if p.is_file()):
        assert SECRET.encode() not in path.read_bytes()

    history = CliRunner().invoke(main, ["history", "--db", str(db), "--serial", "P046AAA0001"])
    assert history.exit_code == 0 and f"serial P046AAA0001: device {first_device}" in history.output
    assert history.output.count("PASS") == 1

    # The sync imports device IDs and names each device by its serial number (nothing left to send now).
    synced = CliRunner().invoke(
        main,
        ["sync", "--db", str(db), "--profile", str(tmp_path / "line.toml")],
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    assert synced.exit_code == 0, synced.output
    named = {d.id: d.name for d in cloud.console.state.devices[int(PRODUCT)]}
    assert named == {first_device: "P046AAA0001", outcome["A2"]["device_id"]: "P046AAA0002"}


def test_kill_9_mid_write_keeps_the_scan_to_device_link(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    args = [
        *STATION,
        "run",
        "--profile",
        str(_scan_profile(tmp_path)),
        "--db",
        str(db),
        "--operator",
        "ana",
        "--json",
        "--simulate",
        "argon-dfu:1",
        "--duration",
        "60",
    ]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    device = None
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            assert time.monotonic() < deadline, "the board never started writing"
            event = json.loads(line)
            if event["event"] == "scan-wanted":
                proc.stdin.write(f"P046KILL0001 {SECRET}\n")  # a plain line: the board waiting
                proc.stdin.flush()
            if event["event"] == "progress" and event["phase"] == "write":
                device = event["device_id"]
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert device is not None
    with Registry(db) as registry:
        assert registry.trace.serial_of(device) == "P046KILL0001"
        (attempt,) = registry.history()
        assert attempt.result is AttemptResult.INTERRUPTED and attempt.device_id == device
        assert registry.audit.verify(lambda head: None).ok


def test_scan_line_formats() -> None:
    from station.cli.scan_input import parse_scan_line

    assert parse_scan_line('{"scan": "SN-1 SECRET", "slot": "A1"}\n') == ("SN-1 SECRET", "A1")
    assert parse_scan_line('{"scan": "SN-1"}') == ("SN-1", None)
    assert parse_scan_line("SN-1 SECRET\r\n") == ("SN-1 SECRET", None)
    for bad, why in (
        ("{not json", "not valid JSON"),
        ('{"code": "SN-1"}', '"scan": "CODE"'),
        ('{"scan": "SN-1", "slot": 3}', '"slot" must be a string'),
    ):
        try:
            parse_scan_line(bad)
        except ScanRejected as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
