"""The real peer: the unmodified esptool CLI, as a subprocess, against the simulated ESP loader."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_tools.esp import build_app_image
from station.sim.esp_loader import SimulatedEsp
from station.sim.timing import TimingModel

MAC = "24:0a:c4:12:34:56"

# Unit tests run the simulators untimed.
OFF = TimingModel(enabled=False)


def esptool(url: str, *args: str, chip: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # socket:// makes esptool skip resets on its own; one connect attempt keeps failures quick.
    cmd = [sys.executable, "-m", "esptool", "--port", url, "--before", "no-reset", "--connect-attempts", "1"]
    if chip is not None:
        cmd += ["--chip", chip]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def esp32() -> Iterator[SimulatedEsp]:
    with SimulatedEsp("esp32", MAC, unsupported_reply="echo", timing=OFF) as sim:
        sim.serve_tcp()
        yield sim


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.bin"
    path.write_bytes(build_app_image(chip="esp32", payload_size=30000, seed=7))
    return path


def test_read_mac_detects_the_chip_like_real_rom(tmp_path: Path) -> None:
    # Default refusal style: GET_SECURITY_INFO answered the way an ESP32 ROM does (8 packets).
    with SimulatedEsp("esp32", MAC, timing=OFF) as sim:
        url = sim.serve_tcp()
        result = esptool(url, "read-mac")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ESP32" in result.stdout
    assert f"MAC:                {MAC}" in result.stdout


@pytest.mark.parametrize(("chip", "name"), [("esp32s3", "ESP32-S3"), ("esp32c3", "ESP32-C3")])
def test_read_mac_detects_later_chips_by_security_info(chip: str, name: str) -> None:
    with SimulatedEsp(chip, "7c:df:a1:00:11:22", timing=OFF) as sim:
        url = sim.serve_tcp()
        result = esptool(url, "read-mac")
        explicit = esptool(url, "read-mac", chip=chip)
        wrong = esptool(url, "read-mac", chip="esp32")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Detecting chip type... {name}" in result.stdout
    assert "7c:df:a1:00:11:22" in result.stdout
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr
    assert wrong.returncode == 2 and f"This chip is {name}, not ESP32" in wrong.stdout + wrong.stderr


def test_flash_id_reports_the_nor_part(esp32: SimulatedEsp) -> None:
    assert esp32.url is not None
    result = esptool(esp32.url, "--no-stub", "flash-id")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Manufacturer: ef" in result.stdout
    assert "Device: 4016" in result.stdout
    assert "Detected flash size: 4MB" in result.stdout


@pytest.mark.parametrize(
    "mode",
    [
        ["--no-stub", "write-flash"],
        ["--no-stub", "write-flash", "-z"],
        ["write-flash"],
        ["write-flash", "-u"],
    ],
    ids=["rom", "rom-compressed", "stub-compressed", "stub-uncompressed"],
)
def test_write_flash_then_verify(esp32: SimulatedEsp, app: Path, mode: list[str]) -> None:
    assert esp32.url is not None
    data = app.read_bytes()
    result = esptool(esp32.url, *mode, "0x10000", str(app))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hash of data verified." in result.stdout
    assert esp32.read_flash(0x10000, len(data)) == data
    compressed = "-z" in mode or mode == ["write-flash"]
    assert bool(esp32.commands["FLASH_DEFL_DATA"]) is compressed
    assert bool(esp32.commands["MEM_END"]) is ("--no-stub" not in mode)
    verify = esptool(esp32.url, "verify-flash", "0x10000", str(app))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "Verification successful (digest matched)." in verify.stdout


def test_verify_flash_fails_on_other_content(esp32: SimulatedEsp, app: Path, tmp_path: Path) -> None:
    assert esp32.url is not None
    assert esptool(esp32.url, "--no-stub", "write-flash", "0x10000", str(app)).returncode == 0
    other = tmp_path / "other.bin"
    other.write_bytes(build_app_image(chip="esp32", payload_size=30000, seed=8))
    result = esptool(esp32.url, "--no-stub", "verify-flash", "0x10000", str(other))
    assert result.returncode == 2
    assert "Verification failed" in result.stdout + result.stderr


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_read_flash_returns_what_is_there(esp32: SimulatedEsp, tmp_path: Path, stub: bool) -> None:
    assert esp32.url is not None
    content = hashlib.sha256(b"seed").digest() * 256  # 8 KiB
    esp32.flash.load(0x20000, content)
    out = tmp_path / "read.bin"
    size = len(content) if stub else 1024
    args = ([] if stub else ["--no-stub"]) + ["read-flash", "0x20000", hex(size), str(out)]
    result = esptool(esp32.url, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == content[:size]


def test_erase_region_and_erase_flash_with_the_stub(esp32: SimulatedEsp) -> None:
    assert esp32.url is not None
    esp32.flash.load(0x3000, b"\0" * 0x2000)
    assert esptool(esp32.url, "erase-region", "0x3000", "0x1000").returncode == 0
    assert esp32.read_flash(0x3000, 0x2000) == b"\xff" * 0x1000 + b"\0" * 0x1000
    assert esptool(esp32.url, "erase-flash").returncode == 0
    assert esp32.read_flash(0x4000, 0x1000) == b"\xff" * 0x1000


def test_baud_change_and_stub_left_running(esp32: SimulatedEsp, app: Path) -> None:
    assert esp32.url is not None
    result = esptool(esp32.url, "-b", "921600", "--after", "no-reset-stub", "write-flash", "0x10000", str(app))
    assert result.returncode == 0, result.stdout + result.stderr
    assert esp32.commands["CHANGE_BAUDRATE"] == 1


def test_esptool_over_a_pty(app: Path) -> None:
    with SimulatedEsp("esp32c3", "58:cf:79:00:00:09", timing=OFF) as sim:
        path = sim.serve_pty()
        assert path.startswith("/dev/")
        data = build_app_image(chip="esp32c3", payload_size=20000)
        app.write_bytes(data)
        mac = esptool(path, "read-mac")
        write = esptool(path, "write-flash", "0x0", str(app))
        # No reset line on a pty: the stub is still running for the next run, as on hardware.
        again = esptool(path, "verify-flash", "0x0", str(app))
    assert mac.returncode == 0 and "58:cf:79:00:00:09" in mac.stdout, mac.stdout + mac.stderr
    assert write.returncode == 0, write.stdout + write.stderr
    assert again.returncode == 0 and "Stub flasher is already running" in again.stdout, again.stdout
    assert sim.read_flash(0, len(data)) == data


def test_refused_block_fails_esptool_naming_the_block(app: Path) -> None:
    from station.sim.faults import FaultPlan, parse_faults

    with SimulatedEsp(
        "esp32", MAC, faults=FaultPlan(parse_faults("refuse-block@3")), unsupported_reply="echo", timing=OFF
    ) as sim:
        url = sim.serve_tcp()
        failed = esptool(url, "--no-stub", "write-flash", "0x10000", str(app))
        again = esptool(url, "--no-stub", "write-flash", "0x10000", str(app))
    assert failed.returncode == 2
    assert "after seq 3" in failed.stdout + failed.stderr
    assert again.returncode == 0, again.stdout + again.stderr
