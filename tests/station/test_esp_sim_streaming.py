"""The timed ESP simulator streams as a UART does, and a stopped simulator can be served again (a re-plug)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from station.sim.esp_chips import ESP32
from station.sim.esp_flash import NorFlash
from station.sim.esp_loader import SimulatedEsp
from station.sim.esp_session import REQUEST_HEADER, EspChip, LoaderMode, LoaderSession, Op
from station.sim.esp_slip import SlipDecoder, slip_encode
from station.sim.faults import FaultPlan
from station.sim.timing import TimingModel

MAC = "24:0a:c4:12:34:56"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _request(op: int, data: bytes = b"") -> bytes:
    return slip_encode(REQUEST_HEADER.pack(0, op, len(data), 0) + data)


def test_a_stub_read_sends_each_packet_when_the_uart_has_shifted_it_out() -> None:
    fake = FakeTime()
    sent: list[tuple[float, bytes]] = []
    chip = EspChip(ESP32, bytes.fromhex("240ac4123456"), NorFlash(1024 * 1024))
    timing = TimingModel(enabled=True, clock=fake.clock, sleep=fake.sleep)
    session = LoaderSession(chip, faults=FaultPlan(), timing=timing, send=lambda b: sent.append((fake.now, b)))
    session.mode = LoaderMode.STUB
    # esptool's stub read: 4096-byte packets, up to 64 in flight; at 115200 baud one takes 0.36 s.
    out = session.receive(_request(Op.READ_FLASH, struct.pack("<IIII", 0, 64 * 4096, 4096, 64)))
    assert not out.data  # everything went to the transport as it was produced
    frames = [(at, SlipDecoder().feed(raw)[0]) for at, raw in sent]
    assert len(frames) == 1 + 64  # the ACK, then every packet allowed in flight
    first_packet_at = frames[1][0]
    assert first_packet_at < 0.5, "the first packet waited for the ones after it"
    assert frames[-1][0] > 20  # 256 KiB at 115200 baud: the model still charges all of it


@pytest.mark.slow
def test_esptool_reads_flash_from_the_timed_simulator_at_rom_baud(tmp_path: Path) -> None:
    # 48 KiB at 115200 baud is 4.3 s on the modelled UART: more than esptool's 3 s wait for a packet
    # if the simulator held the packets back until all of them were out.
    content = bytes(range(256)) * 192
    with SimulatedEsp("esp32", MAC, timing=TimingModel()) as sim:
        sim.flash.load(0x20000, content)
        url = sim.serve_tcp()
        out = tmp_path / "read.bin"
        result = subprocess.run(
            [
                *(sys.executable, "-m", "esptool", "--port", url, "--chip", "esp32", "--connect-attempts", "1"),
                *("read-flash", "0x20000", hex(len(content)), str(out)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == content


def test_a_stopped_simulator_serves_again_with_its_flash(tmp_path: Path) -> None:
    with SimulatedEsp("esp32", MAC, timing=TimingModel(enabled=False)) as sim:
        sim.flash.load(0x1000, b"kept")
        sim.serve_tcp()
        sim.stop()
        second = sim.serve_tcp()
        result = subprocess.run(
            [sys.executable, "-m", "esptool", "--port", second, "--connect-attempts", "1", "read-mac"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert MAC in result.stdout
        assert sim.read_flash(0x1000, 4) == b"kept"
        sim.stop()
        pty = sim.serve_pty()
        assert pty.startswith("/dev/")
