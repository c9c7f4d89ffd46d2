"""Real YModem peers: lrzsz's ``rb`` receives our sender's transfer, ``sb`` sends to the simulated device."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from firmware_tools.particle import ModuleFunction, pack_module
from station.errors import DeviceDisconnected
from station.protocols import ymodem
from station.protocols.listening import FLASH_PROMPT
from station.sim.particle_serial import SimulatedSerialDevice
from station.sim.timing import TimingModel

needs_rb = pytest.mark.skipif(shutil.which("rb") is None, reason="lrzsz's rb is not installed (make system-deps)")
needs_sb = pytest.mark.skipif(shutil.which("sb") is None, reason="lrzsz's sb is not installed (make system-deps)")


class FdStream:
    """A ByteStream over a file descriptor: a socket to rb, or the host side of the simulator's pty."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except OSError as exc:
                raise DeviceDisconnected(str(exc)) from None

    def read(self, size: int, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, size)
        except OSError as exc:
            raise DeviceDisconnected(str(exc)) from None


@needs_rb
@pytest.mark.parametrize(("block", "size"), [(1024, 70_001), (128, 3000), (1024, 1024)])
def test_rb_receives_our_transfer_byte_exact(tmp_path: Path, block: int, size: int) -> None:
    data = os.urandom(size)
    # A socket pair, not a pty: rb flushes its tty on exit, and on a pty that also drops its last
    # ACK before the other side can read it, which no real serial link would do.
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(["rb", "--ymodem", "-b"], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE, cwd=tmp_path)
    theirs.close()
    try:
        progress: list[int] = []
        ymodem.send_file(
            FdStream(ours.fileno()),
            "firmware.bin",
            data,
            block_size=block,
            # Longer than rb's 5 s "wait for silence" after garbage, so a retry is never garbage.
            timeout=10.0,
            finish_timeout=10.0,
            progress=lambda done, total: progress.append(done),
        )
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        ours.close()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert (tmp_path / "firmware.bin").read_bytes() == data
    assert progress[-1] == size


@needs_sb
@pytest.mark.parametrize("flags", [[], ["-k"]], ids=["128-byte", "1k"])
def test_sb_sends_a_module_the_simulator_installs_byte_exact(tmp_path: Path, flags: list[str]) -> None:
    module = pack_module(os.urandom(9000), platform_id=6, function=ModuleFunction.USER_PART, index=1)
    path = tmp_path / "app.bin"
    path.write_bytes(module)
    # Device OS says "C" only after its receive timeout; sb waits for that "C".
    with SimulatedSerialDevice("photon", nak_timeout=0.2, timing=TimingModel(enabled=False)) as sim:
        fd = os.open(sim.port, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"f")
            seen = b""
            while FLASH_PROMPT.encode() not in seen:
                ready, _, _ = select.select([fd], [], [], 5.0)
                assert ready, f"no prompt after 'f': {seen!r}"
                seen += os.read(fd, 256)
            result = subprocess.run(
                ["sb", "--ymodem", *flags, str(path)],
                stdin=fd,
                stdout=fd,
                stderr=subprocess.PIPE,
                timeout=30,
                check=False,
            )
        finally:
            os.close(fd)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        for _ in range(100):
            if sim.transfers:
                break
            select.select([], [], [], 0.02)
        assert sim.transfers[-1].outcome == "installed"
        assert sim.installed(int(ModuleFunction.USER_PART), 1) == module
