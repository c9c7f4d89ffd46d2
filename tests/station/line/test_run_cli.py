"""station run and station demo as a user runs them: real processes, JSON events checked against the schema,
and a kill -9 in the middle of a write followed by a registry consistency check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from station.demo.sample_release import make_sample_release
from station.store import AttemptResult, Registry

STATION = [sys.executable, "-m", "station.cli"]
SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "station" / "line" / "events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _profile(tmp_path: Path) -> Path:
    release = make_sample_release(tmp_path, target="argon", product_id=1234, product_version=7)
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "line-1"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        'operator = "ana"\njob_timeout = 30\n[slots]\n"sim-1" = "A1"\n'
    )
    return profile


def _events(text: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    for event in events:
        VALIDATOR.validate(event)
    return events


def test_run_json_events_follow_the_schema_and_records_match(tmp_path: Path) -> None:
    profile, db = _profile(tmp_path), tmp_path / "station.db"
    proc = subprocess.run(
        [
            *STATION,
            "run",
            "--profile",
            str(profile),
            "--db",
            str(db),
            "--json",
            "--no-timing",
            "--simulate",
            "argon-dfu:2,photon-dfu:1,argon-serial:1,esp32c3:1",
            "--duration",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    results = {e["slot"]: e for e in events if e["event"] in ("passed", "failed")}
    assert set(results) == {"sim-1", "sim-2", "sim-3", "sim-4", "sim-5"}
    assert [results[s]["event"] for s in ("sim-1", "sim-2", "sim-4")] == ["passed"] * 3
    assert results["sim-3"]["reason"] == "wrong-target" and results["sim-5"]["reason"] == "wrong-target"
    assert {e["label"] for e in events if e["slot"] == "sim-1"} == {"A1"}
    with Registry(db, create=False) as registry:
        history = registry.history()
        assert len(history) == 5
        assert {a.operator for a in (h.context for h in history)} == {"ana"}
        passed = {a.device_id for a in history if a.result is AttemptResult.PASS}
        assert passed == {str(results[s]["device_id"]) for s in ("sim-1", "sim-2", "sim-4")}
        assert registry.check_consistency() == ()


@pytest.mark.slow
def test_kill_9_mid_write_then_restart_keeps_the_registry_sound(tmp_path: Path) -> None:
    profile, db = _profile(tmp_path), tmp_path / "station.db"
    args = [*STATION, "run", "--profile", str(profile), "--db", str(db), "--json", "--simulate", "argon-dfu:3"]
    proc = subprocess.Popen([*args, "--duration", "60"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if '"event":"progress"' in line and '"phase":"write"' in line:
            break
        assert time.monotonic() < deadline, "no write started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    with Registry(db) as registry:  # opening marks the dead run's attempts interrupted
        history = registry.history()
        assert history and all(a.result is not AttemptResult.RUNNING for a in history)
        assert any(a.result is AttemptResult.INTERRUPTED for a in history)
        assert registry.check_consistency() == ()
        passed_before = {a.device_id for a in history if a.result is AttemptResult.PASS}

    rerun = subprocess.run([*args, "--no-timing", "--duration", "3"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    with Registry(db, create=False) as registry:
        history = registry.history()
        passes = [a.device_id for a in history if a.result is AttemptResult.PASS]
        assert len(passes) == len(set(passes))  # nothing counted twice
        assert len(passes) == len(passed_before) + 3
        assert registry.check_consistency() == ()
        assert registry.stats().attempts_interrupted >= 1


def test_demo_runs_a_whole_shift(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*STATION, "demo", "--json", "--no-timing", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    kinds = {e["event"] for e in events}
    assert {"attached", "identified", "progress", "passed", "failed", "recorded", "detached", "sync"} <= kinds
    reasons = sorted(str(e["reason"]) for e in events if e["event"] == "failed")
    assert reasons == ["disconnected", "wrong-target", "wrong-target"]
    exported = (tmp_path / "import.txt").read_text().split()
    assert len(exported) == 6 and len(set(exported)) == 6
    assert "6 device(s) imported into the simulated console, 0 pending" in proc.stderr
    # The rollout epilogue: release refused until a locked test device runs the version.
    assert "rollout: release refused, as it must be" in proc.stderr
    assert "rollout: released version 3: 1 device(s) run it" in proc.stderr
    # The re-plugged board failed once, then passed: the same device ID appears in both.
    failed_ids = {e["device_id"] for e in events if e["event"] == "failed" and e["reason"] == "disconnected"}
    assert failed_ids <= set(exported)
