"""The profile's ESP settings (esp_baud, connect_attempts, verify = "required") and the bundle's chip reach
every ESP board the line opens; defaults are esptool's / ESP-IDF's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli.line_sources import open_sources
from station.demo.sample_release import make_sample_release
from station.devices import esptool_adapter
from station.devices.esp import DEFAULT_BAUD, EspDevice
from station.errors import InputError
from station.line_setup import prepare_line
from station.profile import DEFAULT_CONNECT_ATTEMPTS, DEFAULT_ESP_BAUD, VerifyPolicy, load_profile

STATION = [sys.executable, "-m", "station.cli"]


def _profile(tmp_path: Path, extra: str = "", target: str = "esp32") -> Path:
    release = make_sample_release(tmp_path, target=target, app_size=20_000)
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "line-e"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        f"job_timeout = 60\n{extra}"
    )
    return profile


def test_defaults_are_esptools_attempts_and_esp_idfs_baud(tmp_path: Path) -> None:
    profile = load_profile(_profile(tmp_path))
    assert (profile.esp_baud, profile.connect_attempts) == (DEFAULT_ESP_BAUD, DEFAULT_CONNECT_ATTEMPTS)
    # Read from esptool itself, so a changed esptool default shows up here.
    assert DEFAULT_CONNECT_ATTEMPTS == esptool_adapter.DEFAULT_CONNECT_ATTEMPTS == EspDevice("x").connect_attempts
    assert DEFAULT_ESP_BAUD == DEFAULT_BAUD == 460800


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("esp_baud = 12", "esp_baud must be between"),
        ('esp_baud = "fast"', "esp_baud must be a baud rate"),
        ("connect_attempts = 0", "connect_attempts must be between 1 and 1000"),
        ("connect_attempts = true", "connect_attempts must be a whole number"),
        ('verify = "sometimes"', "sometimes"),
    ],
)
def test_bad_esp_settings_are_one_clear_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_profile(_profile(tmp_path, extra))


def test_the_profile_and_bundle_reach_every_esp_board_of_the_line(tmp_path: Path) -> None:
    line = prepare_line(_profile(tmp_path, 'esp_baud = 230400\nconnect_attempts = 2\nverify = "required"\n'))
    assert line.plan.verify is VerifyPolicy.REQUIRED
    options = line.esp_options()
    assert options == {"baud": 230400, "connect_attempts": 2, "chip": "esp32"}
    (bench,) = open_sources("esp32:1", timing=False, esp_options=options)
    try:
        (candidate,) = bench.scan()
        device = candidate.open()
        assert isinstance(device, EspDevice)
        assert (device.baud, device.connect_attempts, device.chip) == (230400, 2, "esp32")
        with device:
            assert device.identify().platform == "ESP32"
        sim = bench.simulator(candidate.slot)  # type: ignore[attr-defined]
        assert sim.commands["CHANGE_BAUDRATE"] == 1
        assert sim.commands["GET_SECURITY_INFO"] == 0  # the chip was named: no detection
    finally:
        bench.close()


def test_station_run_flashes_an_esp_bundle_with_the_profiles_settings(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "esp_baud = 921600\nconnect_attempts = 3\n")
    proc = subprocess.run(
        [
            *STATION,
            "run",
            "--profile",
            str(profile),
            "--db",
            str(tmp_path / "station.db"),
            "--json",
            "--no-timing",
            "--simulate",
            "esp32:1,esp32s3:1",
            "--duration",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    results = {e["slot"]: e for e in events if e["event"] in ("passed", "failed")}
    assert results["sim-1"]["event"] == "passed"
    # The bundle is for an ESP32: esptool connects as one, and an S3 is refused by esptool's own check.
    assert results["sim-2"]["reason"] == "wrong-target" and "not ESP32" in str(results["sim-2"]["message"])


def test_station_check_shows_the_esp_settings_and_the_required_verify(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from station.cli import main

    profile = _profile(tmp_path, 'esp_baud = 921600\nverify = "required"\n')
    result = CliRunner().invoke(main, ["check", "--profile", str(profile), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["esp"] == {"baud": 921600, "connect_attempts": 7} and summary["verify"] == "required"
    text = CliRunner().invoke(main, ["check", "--profile", str(profile)]).stdout
    assert "ESP boards at 921600 baud, 7 connect attempts each" in text
    assert "then verify (a board that cannot be checked fails)" in text


@pytest.mark.parametrize(("verify", "sdm_event"), [("always", "passed"), ("required", "failed")])
def test_station_run_with_a_secure_download_mode_board(tmp_path: Path, verify: str, sdm_event: str) -> None:
    profile = _profile(tmp_path, f'verify = "{verify}"\n', target="esp32s3")
    db = tmp_path / "station.db"
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
            "esp32s3:1,esp32s3-sdm:1",
            "--duration",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    results = {e["slot"]: e for e in events if e["event"] in ("passed", "failed")}
    assert results["sim-1"]["event"] == "passed"
    assert results["sim-2"]["event"] == sdm_event
    if sdm_event == "failed":
        assert results["sim-2"]["reason"] == "verify-mismatch"
        assert "verify not possible in secure download mode" in str(results["sim-2"]["message"])
    else:
        from station.store import Registry

        with Registry(db, create=False) as registry:
            sdm = [a for a in registry.history() if a.slot.port_path == "sim-2"]
            assert "verify: verify not possible in secure download mode" in [p.phase for p in sdm[0].phases]
