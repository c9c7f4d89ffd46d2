"""Ctrl-C during the write of a serial or ESP board is a failure (exit 130), never a PASS (DFU: test_cli_flash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.station.discovery.images import esp_app, particle_image


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("photon-serial", lambda: particle_image("photon", size=100 * 1024, seed="big").data),
        ("esp32", lambda: esp_app("esp32", size=300 * 1024)),
    ],
    ids=["serial", "esp"],
)
def test_ctrl_c_during_the_write_is_a_failure_not_a_pass(tmp_path: Path, kind: str, make: Callable[[], bytes]) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(make())
    env = dict(os.environ, BENCHFLASH_SIM_TIMING="1")  # the timed model: the write lasts long enough to interrupt
    command = [sys.executable, "-m", "station.cli", "flash", str(path), "--simulate", kind]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if ": write " in line and 20 <= int(line.rstrip().rsplit(" ", 1)[1].rstrip("%")) < 100:
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, out + err
    assert "PASS" not in out
    assert "interrupted" in err
