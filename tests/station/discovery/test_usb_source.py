"""The USB Particle source through pyusb's real enumeration path, on the simulated bus."""

from __future__ import annotations

import errno
from typing import Any

import pytest
import usb.core

from station.devices.base import Family, Mode
from station.devices.particle_dfu import ParticleDfuDevice, ParticleNormalModeDevice
from station.discovery import all_sources
from station.discovery.base import scan_all
from station.discovery.probe import peek_device
from station.discovery.serial_ports import SerialPortSource
from station.discovery.usb_dfu import UsbParticleSource
from station.errors import DeviceDisconnected, DeviceError, Reason
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend

from .images import particle_image

ARGON_ID = "e00fce68" + "0123456789abcdef"
PHOTON_ID = "3a001f00" + "0011223344556677"


def _bus() -> SimulatedUsbBackend:
    bus = SimulatedUsbBackend()
    bus.plug("argon", ARGON_ID, port_path="1-1.4", timing=TimingModel(enabled=False))
    bus.plug("photon", PHOTON_ID, port_path="1-2", timing=TimingModel(enabled=False), mode="normal")
    return bus


def test_scan_lists_dfu_and_normal_mode_boards_by_usb_port_path() -> None:
    source = UsbParticleSource(backend=_bus())
    found = {c.slot: c.description for c in source.scan()}
    assert set(found) == {"1-1.4", "1-2"}
    assert found["1-1.4"].family is Family.PARTICLE_DFU and found["1-1.4"].mode is Mode.DFU
    assert (found["1-1.4"].vid, found["1-1.4"].pid) == (0x2B04, 0xD00C)
    assert found["1-2"].mode is Mode.NORMAL and found["1-2"].pid == 0xC006
    assert source.problem is None


def test_scan_does_no_device_io() -> None:
    bus = _bus()
    opened: list[object] = []
    real_open = bus.open_device

    def counting_open(dev: Any) -> Any:
        opened.append(dev)
        return real_open(dev)

    bus.open_device = counting_open  # type: ignore[method-assign]
    for _ in range(3):
        assert len(UsbParticleSource(backend=bus).scan()) == 2
    assert opened == []


def test_open_a_dfu_board_identifies_and_flashes_it() -> None:
    bus = _bus()
    candidate = next(c for c in UsbParticleSource(backend=bus).scan() if c.slot == "1-1.4")
    device = candidate.open()
    assert isinstance(device, ParticleDfuDevice)
    identity = device.identify()
    assert (identity.device_id, identity.platform, identity.platform_id) == (ARGON_ID, "argon", 12)
    image = particle_image("argon")
    device.flash([image])
    device.verify([image])
    device.close()
    sim = bus.device_at("1-1.4")
    assert sim is not None and sim.read(image.address, image.size) == image.data


def test_open_switches_a_normal_mode_board_into_dfu_and_peek_does_not() -> None:
    bus = _bus()
    source = UsbParticleSource(backend=bus, device_options={"dfu_timeout": 5.0})
    candidate = next(c for c in source.scan() if c.slot == "1-2")
    sim = bus.device_at("1-2")
    assert sim is not None

    peeked = peek_device(candidate)
    assert isinstance(peeked, ParticleNormalModeDevice)
    assert peeked.identify().device_id == PHOTON_ID
    peeked.close()
    assert sim.usb_mode.value == "normal"

    device = candidate.open()
    assert isinstance(device, ParticleDfuDevice)
    assert sim.usb_mode.value == "dfu"
    assert device.identify().platform == "photon"
    # The board stays on its port: the slot does not change when it re-enumerates in DFU mode.
    assert [c.description.mode for c in source.scan() if c.slot == "1-2"] == [Mode.DFU]
    device.close()


def test_permission_denied_is_a_permission_error_with_the_udev_fix() -> None:
    bus = _bus()
    sim = bus.device_at("1-1.4")
    assert sim is not None
    sim.access_denied = True
    candidate = next(c for c in UsbParticleSource(backend=bus).scan() if c.slot == "1-1.4")
    with pytest.raises(DeviceError) as caught:
        candidate.open()
    assert caught.value.reason is Reason.PERMISSION
    assert caught.value.hint is not None and "udev" in caught.value.hint


def test_a_board_gone_between_scan_and_open_is_a_disconnect() -> None:
    bus = _bus()
    candidate = next(c for c in UsbParticleSource(backend=bus).scan() if c.slot == "1-1.4")
    sim = bus.device_at("1-1.4")
    assert sim is not None
    bus.detach(sim)
    assert [c.slot for c in UsbParticleSource(backend=bus).scan()] == ["1-2"]
    with pytest.raises(DeviceDisconnected):
        candidate.open()


def test_one_broken_device_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = _bus()
    real_find = usb.core.find

    class Broken:
        @property
        def idVendor(self) -> int:
            raise usb.core.USBError("gone", errno=errno.ENODEV)

    def find(**kwargs: Any) -> list[Any]:
        return [Broken(), *real_find(**kwargs)]

    monkeypatch.setattr(usb.core, "find", find)
    assert sorted(c.slot for c in UsbParticleSource(backend=bus).scan()) == ["1-1.4", "1-2"]


def test_no_libusb_is_a_named_problem_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def find(**kwargs: Any) -> list[Any]:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", find)
    source = UsbParticleSource()
    assert source.scan() == []
    assert source.problem is not None and "libusb" in str(source.problem.hint)


class _Port:
    def __init__(self, device: str, vid: int, pid: int, location: str) -> None:
        self.device, self.vid, self.pid, self.location = device, vid, pid, location
        self.serial_number = None
        self.description = "n/a"


def test_usb_claims_a_board_first_when_serial_sees_it_too() -> None:
    # The same normal-mode photon seen on USB at 1-2 and as its CDC port (location 1-2:1.0).
    bus = _bus()
    serial = SerialPortSource(comports=lambda: [_Port("/dev/ttyACM0", 0x2B04, 0xC006, "1-2:1.0")])
    seen = scan_all([UsbParticleSource(backend=bus), serial])
    assert seen["1-2"].description.family is Family.PARTICLE_DFU
    assert seen["1-2"].description.mode is Mode.NORMAL


def test_all_sources_puts_usb_first() -> None:
    sources = all_sources(usb_backend=_bus())
    assert isinstance(sources[0], UsbParticleSource) and isinstance(sources[1], SerialPortSource)
    assert sources[0].backend is not None
    named = all_sources(usb_backend=_bus(), esp_slots=("1-1.2", "/dev/ttyS1"))[1]
    assert isinstance(named, SerialPortSource) and named.esp_slots == {"1-1.2", "/dev/ttyS1"}
