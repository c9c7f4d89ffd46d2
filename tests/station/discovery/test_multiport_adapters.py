"""Multi-port USB-serial adapters as they are: every UART its own slot, a JTAG channel never probed.

Each port is a real pty served by a simulated ESP, listed the way pyserial lists the interfaces of
an FT4232H / FT2232H (location "1-1.4:1.N"), and looked at through `station devices`, as a user would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from station.cli import main
from station.discovery.serial_ports import SerialPortSource
from station.sim.esp_loader import SimulatedEsp
from station.sim.timing import TimingModel


@dataclass
class ListedPort:
    """What pyserial's comports() hands out for one tty, reduced to what discovery reads."""

    device: str
    vid: int
    pid: int
    location: str
    serial_number: str | None = None
    description: str = "Quad RS232-HS"


@pytest.fixture
def chips() -> Iterator[list[SimulatedEsp]]:
    made = [SimulatedEsp("esp32", f"24:0a:c4:00:00:0{n}", timing=TimingModel(enabled=False)) for n in range(6)]
    try:
        yield made
    finally:
        for chip in made:
            chip.stop()


def _devices(ports: list[ListedPort]) -> list[dict[str, object]]:
    source = SerialPortSource(comports=lambda: ports)
    result = CliRunner().invoke(main, ["devices", "--json"], obj={"sources": [source]})
    assert result.exit_code == 0, result.output
    devices: list[dict[str, object]] = json.loads(result.stdout)["devices"]
    return devices


def test_four_ft4232h_ports_are_four_slots(chips: list[SimulatedEsp]) -> None:
    ports = [ListedPort(chip.serve_pty(), 0x0403, 0x6011, f"1-1.4:1.{n}") for n, chip in enumerate(chips[:4])]
    devices = _devices(ports)
    assert [d["port_path"] for d in devices] == ["1-1.4:1.0", "1-1.4:1.1", "1-1.4:1.2", "1-1.4:1.3"]
    assert [d["device_id"] for d in devices] == [chip.device_id for chip in chips[:4]]
    assert all(d["family"] == "esp" and d["pid"] == "6011" for d in devices)


def test_the_jtag_channel_of_an_ft2232h_is_never_probed(chips: list[SimulatedEsp]) -> None:
    # An ESP-Prog (or a Particle programmer shield: the same 0403:6010): channel A is JTAG.
    jtag, uart = chips[4], chips[5]
    ports = [
        ListedPort(jtag.serve_pty(), 0x0403, 0x6010, "2-1:1.0", description="Dual RS232-HS"),
        ListedPort(uart.serve_pty(), 0x0403, 0x6010, "2-1:1.1", description="Dual RS232-HS"),
    ]
    devices = _devices(ports)
    assert [(d["port_path"], d["device_id"]) for d in devices] == [("2-1:1.1", uart.device_id)]
    assert sum(jtag.commands.values()) == 0  # not one loader command: no DTR/RTS dance, no SYNC
    assert sum(uart.commands.values()) > 0
