"""``station sim particle-serial``: a real process serving a pty at --link, and its input errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from firmware_tools.particle import pack_module
from station.cli import main
from station.devices.base import FlashImage
from station.devices.particle_serial import ParticleSerialDevice

DEVICE_ID = "e00fce68aaaabbbbccccdddd"


def test_simulator_process_serves_identify_and_flash_at_the_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyPARTICLE"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "station.cli",
            "sim",
            "particle-serial",
            "--link",
            str(link),
            "--platform",
            "argon",
            "--device-id",
            DEVICE_ID,
            "--no-timing",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not link.is_symlink() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert link.is_symlink(), proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
        assert os.readlink(link).startswith("/dev/pts/")
        image = FlashImage("app.bin", pack_module(bytes(range(256)) * 40, platform_id=12, index=2), 0)
        with ParticleSerialDevice(str(link), timeout=1.0, batch_gap=0.02, reconnect_timeout=5.0) as dev:
            identity = dev.identify()
            dev.flash([image])
            dev.verify([image])
        assert (identity.device_id, identity.platform) == (DEVICE_ID, "argon")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130
    assert not link.exists() and not link.is_symlink()


def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    result = CliRunner().invoke(main, ["sim", "particle-serial", "--link", str(target)])
    assert result.exit_code == 2
    assert "not a symlink" in result.output
    assert target.read_text() == "keep me"


def test_bad_device_id_and_fault_are_usage_errors(tmp_path: Path) -> None:
    link = str(tmp_path / "tty")
    result = CliRunner().invoke(main, ["sim", "particle-serial", "--link", link, "--device-id", "xyz"])
    assert result.exit_code == 2 and "24 hex digits" in result.output
    result = CliRunner().invoke(main, ["sim", "particle-serial", "--link", link, "--faults", "melt@3"])
    assert result.exit_code == 2 and "unknown fault" in result.output
