"""Secure Download Mode: the board is written, verified the way esptool does (not at all: the ROM has
no MD5 in that mode), the attempt says so, and a profile can require verification and fail it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools.esp import build_app_image
from station.cli import main
from station.devices.base import FlashImage, VerifyNote
from station.devices.esp import EspDevice
from station.discovery.base import Candidate
from station.errors import DeviceError
from station.line.plan import JobPlan, Target
from station.line.runner import LineRunner
from station.profile import VerifyPolicy
from station.sim.esp_loader import SimulatedEsp
from station.sim.timing import TimingModel
from station.store import AttemptResult, Registry

OFF = TimingModel(enabled=False)
MAC = "f4:12:fa:43:6b:a0"


def s3_image(seed: int = 1) -> FlashImage:
    return FlashImage("s3-app.bin", build_app_image(chip="esp32s3", payload_size=30000, seed=seed), 0x10000, "app")


@pytest.fixture
def sdm() -> Iterator[SimulatedEsp]:
    with SimulatedEsp("esp32s3", MAC, secure_download=True, unsupported_reply="echo", timing=OFF) as chip:
        chip.serve_tcp()
        yield chip


def native_usb(sim: SimulatedEsp, **options: object) -> EspDevice:
    """The board on its USB-Serial/JTAG port, whose USB serial number is the chip's MAC."""
    assert sim.url is not None
    return EspDevice(sim.url, vid=0x303A, pid=0x1001, usb_serial_number=MAC.upper(), **options)  # type: ignore[arg-type]


def test_an_sdm_board_is_written_and_verify_says_it_cannot_check(sdm: SimulatedEsp) -> None:
    image = s3_image()
    with native_usb(sdm) as device:
        identity = device.identify()
        device.flash([image])
        note = device.verify([image])
        assert device.secure_download_mode
    assert identity.device_id == sdm.device_id and identity.platform == "ESP32-S3"
    assert note == VerifyNote("verify not possible in secure download mode", verified=False)
    assert sdm.read_flash(image.address, image.size) == image.data
    # As esptool: no MD5 asked for (the ROM would refuse it), no stub uploaded, no register read.
    assert sdm.commands["SPI_FLASH_MD5"] == 0 and sdm.commands["MEM_BEGIN"] == 0
    assert sdm.commands["READ_REG"] == 0
    assert sdm.commands["FLASH_DATA"] and not sdm.commands["FLASH_DEFL_DATA"]  # plain, as esptool writes it


def test_an_sdm_board_without_a_mac_serial_number_is_refused_with_the_way_out(sdm: SimulatedEsp) -> None:
    assert sdm.url is not None
    with EspDevice(sdm.url) as device, pytest.raises(DeviceError, match="Secure Download Mode") as caught:
        device.identify()
    assert caught.value.hint is not None and "USB-Serial/JTAG" in caught.value.hint


def test_the_simulator_refuses_what_a_real_sdm_rom_refuses(sdm: SimulatedEsp) -> None:
    import esptool
    from esptool.util import FatalError

    assert sdm.url is not None
    with esptool.cmds.connect_esp(port=sdm.url, chip="esp32s3", before="no-reset") as esp:
        assert esp.secure_download_mode
        with pytest.raises(FatalError, match="result was 0105"):  # "invalid message": not in this mode
            esp.read_reg(0x60007044)


def _line(tmp_path: Path, sim: SimulatedEsp, verify: VerifyPolicy) -> Registry:
    registry = Registry(tmp_path / f"{verify.value}.db")
    plan = JobPlan("line-1", Target(chip="esp32s3"), (s3_image(),), verify=verify, job_timeout=30)
    description = native_usb(sim).describe()

    class OneBoard:
        def scan(self) -> list[Candidate]:
            return [Candidate(description, lambda: native_usb(sim, chip="esp32s3"))]

        def close(self) -> None:
            pass

    runner = LineRunner([OneBoard()], plan, registry, lambda _e: None, poll_interval=0.01)
    _until(runner, lambda: any(a.result is not AttemptResult.RUNNING for a in registry.history()))
    runner.drain()
    return registry


def _until(runner: LineRunner, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runner.poll()
        if done():
            return
        time.sleep(0.02)
    raise AssertionError("line did not settle")


def test_the_line_passes_an_sdm_board_and_records_why_it_was_not_verified(tmp_path: Path, sdm: SimulatedEsp) -> None:
    registry = _line(tmp_path, sdm, VerifyPolicy.ALWAYS)
    (attempt, *_) = registry.history()
    assert attempt.result is AttemptResult.PASS
    assert "verify: verify not possible in secure download mode" in [p.phase for p in attempt.phases]


def test_a_profile_that_requires_verification_fails_an_sdm_board(tmp_path: Path, sdm: SimulatedEsp) -> None:
    registry = _line(tmp_path, sdm, VerifyPolicy.REQUIRED)
    (attempt, *_) = registry.history()
    assert (attempt.result, attempt.error_code) == (AttemptResult.FAIL, "verify-mismatch")
    assert "verify not possible in secure download mode, and the profile requires verification" in str(
        attempt.error_message
    )


def test_station_sim_esp_takes_secure_download() -> None:
    result = CliRunner().invoke(main, ["sim", "esp", "--help"])
    assert "--secure-download" in result.output
    bad = CliRunner().invoke(main, ["sim", "esp", "--listen", "127.0.0.1:0", "--chip", "esp32", "--secure-download"])
    assert bad.exit_code == 2 and "GET_SECURITY_INFO" in bad.output + bad.stderr


def test_station_flash_says_how_an_esp_was_verified(tmp_path: Path) -> None:
    image = tmp_path / "app.bin"
    image.write_bytes(build_app_image(payload_size=20000, seed=3))
    with SimulatedEsp("esp32", unsupported_reply="echo", timing=OFF) as sim:
        url = sim.serve_tcp()
        result = CliRunner().invoke(main, ["flash", str(image), "--port", url, "--json"])
        assert result.exit_code == 0, result.output
        outcome = json.loads(result.stdout)
        assert outcome["verified"] is True
        assert outcome["verify_note"] == "verified by esptool write-flash MD5"
        assert sim.commands["SPI_FLASH_MD5"] == 1 and sim.commands["GET_SECURITY_INFO"] == 0


def test_station_flash_on_an_sdm_port_without_a_mac_is_one_clear_line(tmp_path: Path, sdm: SimulatedEsp) -> None:
    image = tmp_path / "s3.bin"
    image.write_bytes(s3_image().data)
    assert sdm.url is not None
    result = CliRunner().invoke(main, ["flash", str(image), "--port", sdm.url])
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("FAIL")]
    assert "Secure Download Mode" in line and "USB-Serial/JTAG" in line
    assert sdm.commands["FLASH_BEGIN"] == 0  # nothing written
