"""`station sim particle-serial` and `station sim esp` stopped by a supervisor (SIGTERM) clean up as on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def test_sigterm_removes_the_link_of_a_serial_simulator(tmp_path: Path) -> None:
    link = tmp_path / "ttyPARTICLE"
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "sim", "particle-serial", "--link", str(link), "--no-timing"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not link.is_symlink() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert link.is_symlink()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not link.is_symlink(), "a dangling link was left behind"
    assert proc.returncode != 0  # stopped, not finished


def test_sigterm_stops_an_esp_simulator_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "sim", "esp", "--listen", "127.0.0.1:0", "--no-timing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening on socket://" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0  # as after Ctrl-C
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
