"""`station run` on a real terminal: the dashboard comes up, shows PASS, and `q` ends the shift cleanly."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from station.demo.sample_release import make_sample_release
from station.store import AttemptResult, Registry


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if needle in seen:
                return seen
    raise AssertionError(f"{needle!r} not on screen after {timeout} s; last output: {seen[-400:]!r}")


def test_dashboard_on_a_terminal_shows_pass_and_quits_on_q(tmp_path: Path) -> None:
    release = make_sample_release(tmp_path, target="argon")
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "line-1"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        'operator = "ana"\n[slots]\n"sim-1" = "BENCH-A1"\n'
    )
    db = tmp_path / "station.db"
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "station.cli",
            "run",
            "--profile",
            str(profile),
            "--db",
            str(db),
            "--simulate",
            "argon-dfu:1",
            "--no-timing",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    try:
        _read_until(master, b"BENCH-A1", 60)  # the slot's tile, under its bench label
        _read_until(master, b"PASS 1", 60)  # the header's count once the board passed
        os.write(master, b"q")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    with Registry(db, create=False) as registry:
        assert [a.result for a in registry.history()] == [AttemptResult.PASS]
