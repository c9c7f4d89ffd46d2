"""``station history``, ``stats`` and ``export`` through click, against a registry the test fills."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import main
from station.store import ImageDigest, Registry, RunContext, Slot
from station.store.paths import DB_ENV

PASSED = ["0a0000000000000000000001", "0a0000000000000000000002", "0a0000000000000000000003"]
FAILING = "0b0000000000000000000009"


class Clock:
    """Starts three hours ago and moves a minute per reading, so ``--since 1h`` splits the history."""

    def __init__(self) -> None:
        self.now = time.time() - 3 * 3600

    def __call__(self) -> float:
        self.now += 60
        return self.now


def _fill(path: Path) -> None:
    clock = Clock()
    context = RunContext("bench-7", "ana", "acme-v3", "cd" * 32, 1234, 3, (ImageDigest("user-part", "ef" * 32),))
    with Registry(path, clock=clock) as registry:

        def run(device: str, ok: bool, label: str) -> None:
            attempt = registry.start_attempt(Slot("1-1." + label[-1], label), context)
            registry.record_phase(attempt, "identify")
            registry.identify(attempt, device, "argon")
            registry.record_phase(attempt, "write")
            if ok:
                registry.finish_attempt(attempt, "pass", enqueue_product="1234")
            else:
                registry.finish_attempt(attempt, "fail", "verify-mismatch", "user-part differs at 0x000d4000")

        run(PASSED[0], True, "A1")
        run(FAILING, False, "A2")
        run(PASSED[1], False, "A3")
        clock.now = time.time() - 1800  # the rest happened in the last half hour
        run(PASSED[1], True, "A3")
        run(PASSED[2], True, "A1")
        run(PASSED[0], True, "A2")  # re-flashed: still exported once


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "station.db"
    _fill(path)
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_history_lists_attempts_with_slot_result_and_reason(db: Path) -> None:
    code, out, _ = _run("history", "--db", str(db))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 + 6
    assert "PASS" in lines[1] and "A1" in lines[1] and PASSED[0] in lines[1]
    assert "FAIL" in lines[2] and "verify-mismatch in write: user-part differs at 0x000d4000" in lines[2]


def test_history_filters_by_device_and_time(db: Path) -> None:
    _, out, _ = _run("history", "--db", str(db), "--device", PASSED[1].upper(), "--json")
    rows = json.loads(out)
    assert [r["result"] for r in rows] == ["fail", "pass"]
    assert rows[1]["slot"] == {"port_path": "1-1.3", "label": "A3"}
    assert rows[1]["images"] == [{"name": "user-part", "sha256": "ef" * 32}]
    assert [p["phase"] for p in rows[1]["phases"]] == ["identify", "write"]
    assert rows[1]["product_id"] == 1234 and rows[1]["operator"] == "ana"
    assert rows[1]["started_at"].endswith("Z")

    _, out, _ = _run("history", "--db", str(db), "--since", "1h", "--json")
    assert [r["device_id"] for r in json.loads(out)] == [PASSED[1], PASSED[2], PASSED[0]]


def test_history_of_one_device_shows_time_per_phase(db: Path) -> None:
    code, out, _ = _run("history", "--db", str(db), "--device", PASSED[2])
    assert code == 0
    lines = out.splitlines()
    assert "PASS" in lines[1]
    # The test clock moves a minute per reading; identify() itself reads it once inside the phase.
    assert lines[2].split() == ["identify", "120.0s", "write", "60.0s"]


def test_history_says_when_it_shows_only_the_latest(db: Path) -> None:
    code, out, err = _run("history", "--db", str(db), "--limit", "2")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert "showing the latest 2 of 6 attempts" in err


def test_history_of_an_unknown_device(db: Path) -> None:
    code, out, _ = _run("history", "--db", str(db), "--device", "ffff")
    assert (code, out.strip()) == (0, "no attempts recorded for that device")


def test_stats_text_and_json(db: Path) -> None:
    code, out, _ = _run("stats", "--db", str(db))
    assert code == 0
    assert "passed 4   failed 2" in out
    assert "first-pass yield  50.0 %" in out  # of four devices tested, two passed the first time
    assert "verify-mismatch" in out and "bench-7" in out

    _, out, _ = _run("stats", "--db", str(db), "--json")
    figures = json.loads(out)
    assert (figures["attempts_passed"], figures["attempts_failed"]) == (4, 2)
    assert (figures["devices_passed"], figures["devices_failing"]) == (3, 1)
    assert figures["failures_by_reason"] == {"verify-mismatch": 2}
    assert figures["by_line"][0]["product_version"] == 3
    assert figures["devices_per_hour"] > 0

    _, out, _ = _run("stats", "--db", str(db), "--since", "1h", "--json")
    assert json.loads(out)["attempts"] == 3


def test_export_txt_is_the_import_file_of_passed_devices(db: Path, tmp_path: Path) -> None:
    code, out, _ = _run("export", "--db", str(db))
    assert code == 0
    assert out.splitlines() == PASSED

    target = tmp_path / "out" / "import.txt"
    target.parent.mkdir()
    code, _, err = _run("export", "--db", str(db), "--format", "txt", "-o", str(target))
    assert code == 0 and "wrote 3 passed devices" in err
    assert target.read_text() == "".join(d + "\n" for d in PASSED)
    assert target.stat().st_mode & 0o777 == 0o644


def test_export_all_as_csv_and_json(db: Path) -> None:
    _, out, _ = _run("export", "--db", str(db), "--all", "--format", "csv")
    rows = {r["device_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == {*PASSED, FAILING}
    assert rows[FAILING]["last_result"] == "fail" and rows[FAILING]["last_error_code"] == "verify-mismatch"
    assert rows[PASSED[0]]["attempts"] == "2"

    _, out, _ = _run("export", "--db", str(db), "--format", "json")
    assert [r["device_id"] for r in json.loads(out)] == PASSED


def test_export_txt_all_is_a_usage_error(db: Path) -> None:
    code, _, err = _run("export", "--db", str(db), "--all")
    assert code == 2 and "import file" in err


def test_the_environment_names_the_registry(db: Path) -> None:
    code, out, _ = _run("export", env={DB_ENV: str(db)})
    assert code == 0 and out.splitlines() == PASSED


def test_a_missing_registry_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = _run("stats", "--db", str(tmp_path / "nothing.db"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no registry at" in err and "--db" in err


def test_bad_since_is_a_usage_error(db: Path) -> None:
    code, _, err = _run("history", "--db", str(db), "--since", "last tuesday")
    assert code == 2 and "--since" in err


def test_station_stats_as_a_real_process(db: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("station")), "stats", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["devices_passed"] == 3
