"""Serial-port discovery: Particle CDC ports and ESP bridges from comports(), keyed by USB location."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from station.devices.base import Family, Mode
from station.devices.esp import EspDevice
from station.devices.particle_serial import ParticleSerialDevice
from station.discovery.serial_ports import SerialPortSource, usb_location
from station.errors import DeviceError, Reason
from station.sim.particle_serial import SimulatedSerialDevice


class Port:
    """What serial.tools.list_ports hands out, reduced to what discovery reads."""

    def __init__(
        self, device: str, vid: int | None, pid: int | None, location: str | None, serial_number: str | None = None
    ) -> None:
        self.device, self.vid, self.pid, self.location = device, vid, pid, location
        self.serial_number = serial_number
        self.description = "test port"


class BrokenPort:
    device = "/dev/ttyBROKEN"

    @property
    def vid(self) -> int:
        raise OSError("sysfs entry vanished")


def test_usb_location_keeps_the_interface_suffix() -> None:
    assert usb_location("1-1.4:1.2") == "1-1.4:1.2"
    assert usb_location("3-2") == "3-2"
    assert usb_location(None) is None and usb_location("") is None


def test_a_single_port_board_keeps_the_bare_usb_path_as_its_slot() -> None:
    # The same key the USB source gives the board, and what existing profiles name.
    ports = [Port("/dev/ttyUSB0", 0x10C4, 0xEA60, "1-1.2:1.0"), Port("/dev/ttyACM0", 0x2B04, 0xC00C, "1-1.4:1.0")]
    assert sorted(c.slot for c in SerialPortSource(comports=lambda: ports).scan()) == ["1-1.2", "1-1.4"]


def test_a_bridge_is_recognised_by_vendor_and_product_never_by_vendor_alone() -> None:
    ports = [
        Port("/dev/ttyUSB0", 0x0403, 0x6015, "1-1:1.0"),  # FT231X: in the table
        Port("/dev/ttyUSB1", 0x0403, 0x6ABC, "1-2:1.0"),  # another FTDI product: not an ESP board's bridge
        Port("/dev/ttyUSB2", 0x10C4, 0x8A2A, "1-3:1.0"),  # a Silicon Labs device that is not a CP210x UART
        Port("/dev/ttyACM0", 0x303A, 0x4001, "1-4:1.0"),  # an app's own TinyUSB CDC: not the ROM loader
    ]
    assert [c.slot for c in SerialPortSource(comports=lambda: ports).scan()] == ["1-1"]


def test_a_port_the_profile_names_is_an_esp_on_its_word() -> None:
    ports = [
        Port("/dev/ttyUSB1", 0x0403, 0x6ABC, "1-2:1.0"),
        Port("/dev/ttyUSB2", 0x1234, 0x5678, "1-3:1.0"),  # not named: not probed
        Port("/dev/ttyS1", None, None, None),  # a motherboard UART the profile names by its node
    ]
    source = SerialPortSource(comports=lambda: ports, esp_slots={"1-2", "/dev/ttyS1"})
    found = {c.slot: c.description for c in source.scan()}
    assert sorted(found) == ["/dev/ttyS1", "1-2"]
    assert all(d.family is Family.ESP for d in found.values())
    assert found["1-2"].serial_port == "/dev/ttyUSB1"
    assert SerialPortSource(comports=lambda: ports, esp=False, esp_slots={"1-2"}).scan() == []


def test_particle_ports_and_esp_bridges_are_found_others_ignored() -> None:
    ports = [
        Port("/dev/ttyACM0", 0x2B04, 0xC00C, "1-1.4:1.0", "E00FCE680123456789ABCDEF"),
        Port("/dev/ttyUSB0", 0x10C4, 0xEA60, "1-1.2:1.0"),
        Port("/dev/ttyUSB1", 0x1A86, 0x7523, "1-1.3:1.0"),
        Port("/dev/ttyACM1", 0x303A, 0x1001, "1-1.5:1.0"),
        Port("/dev/ttyUSB2", 0x0403, 0x6001, None),
        Port("/dev/ttyS0", None, None, None),  # a motherboard UART
        Port("/dev/ttyACM2", 0x2341, 0x0043, "1-1.6:1.0"),  # an Arduino
        BrokenPort(),
    ]
    source = SerialPortSource(comports=lambda: ports)
    found = {c.slot: c.description for c in source.scan()}
    assert set(found) == {"1-1.4", "1-1.2", "1-1.3", "1-1.5", "/dev/ttyUSB2"}
    particle = found["1-1.4"]
    assert (particle.family, particle.mode, particle.serial_port) == (
        Family.PARTICLE_SERIAL,
        Mode.LISTENING,
        "/dev/ttyACM0",
    )
    assert particle.usb_serial_number == "E00FCE680123456789ABCDEF"
    for slot in ("1-1.2", "1-1.3", "1-1.5", "/dev/ttyUSB2"):
        assert found[slot].family is Family.ESP and found[slot].mode is Mode.BOOTLOADER


def test_open_makes_the_family_device_without_touching_the_port() -> None:
    ports = [Port("/dev/ttyACM7", 0x2B04, 0xC006, "2-1:1.0"), Port("/dev/ttyUSB7", 0x10C4, 0xEA60, "2-2:1.0")]
    by_slot = {c.slot: c for c in SerialPortSource(comports=lambda: ports, esp_options={"baud": 460800}).scan()}
    particle = by_slot["2-1"].open()
    esp = by_slot["2-2"].open()
    assert isinstance(particle, ParticleSerialDevice) and particle.describe().port_path == "2-1"
    assert isinstance(esp, EspDevice) and esp.baud == 460800 and esp.describe().port_path == "2-2"


def test_a_port_without_permission_fails_on_open_with_the_fix(tmp_path: Path) -> None:
    node = tmp_path / "ttyACM0"
    node.write_bytes(b"")

    def no_access(path: str, mode: int) -> bool:
        return False

    source = SerialPortSource(comports=lambda: [Port(str(node), 0x2B04, 0xC00C, "1-3:1.0")], access=no_access)
    (candidate,) = source.scan()  # still listed: "no device" would be the wrong answer
    with pytest.raises(DeviceError) as caught:
        candidate.open()
    assert caught.value.reason is Reason.PERMISSION
    assert "udev" in str(caught.value.hint) and "dialout" in str(caught.value.hint)


def test_a_failing_listing_is_a_problem_not_an_exception() -> None:
    def comports() -> list[Any]:
        raise OSError("no /sys")

    source = SerialPortSource(comports=comports)
    assert source.scan() == []
    assert source.problem is not None


def test_a_listed_particle_port_identifies_over_a_real_pty() -> None:
    with SimulatedSerialDevice("argon", "0123456789abcdef01234567") as sim:
        source = SerialPortSource(comports=lambda: [Port(sim.port, 0x2B04, 0xC00C, "1-7:1.0")])
        (candidate,) = source.scan()
        assert os.path.exists(candidate.description.serial_port or "")
        device = candidate.open()
        try:
            identity = device.identify()
        finally:
            device.close()
    assert (identity.device_id, identity.platform, identity.platform_id) == ("0123456789abcdef01234567", "argon", 12)
