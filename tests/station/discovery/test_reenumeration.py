"""Boards that drop off and come back on the same port: the slot lingers, candidates find them again."""

from __future__ import annotations

import pytest

from station.devices.base import Mode
from station.devices.particle_dfu import ParticleDfuDevice
from station.devices.particle_serial import ParticleSerialDevice
from station.discovery import all_sources
from station.discovery.linger import DEFAULT_LINGER, Linger
from station.discovery.serial_ports import SerialPortSource
from station.discovery.usb_dfu import UsbParticleSource
from station.errors import DeviceDisconnected
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend

from .test_serial_source import Port


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_vanished_slot_is_reported_until_the_linger_runs_out() -> None:
    bus = SimulatedUsbBackend()
    sim = bus.plug("argon", "cd" * 12, port_path="1-5", timing=TimingModel(enabled=False))
    clock = FakeClock()
    source = UsbParticleSource(backend=bus, linger=2.0, clock=clock)
    assert [c.slot for c in source.scan()] == ["1-5"]
    bus.detach(sim)
    clock.now += 1.5
    (lingering,) = source.scan()
    assert lingering.slot == "1-5"
    with pytest.raises(DeviceDisconnected):
        lingering.open()
    clock.now += 1.0
    assert source.scan() == []


def test_a_board_back_within_the_linger_keeps_its_slot_in_its_new_mode() -> None:
    bus = SimulatedUsbBackend()
    bus.plug("boron", "ef" * 12, port_path="1-6", mode="normal", timing=TimingModel(enabled=False))
    clock = FakeClock()
    source = UsbParticleSource(backend=bus, linger=2.0, clock=clock)
    (first,) = source.scan()
    assert first.description.mode is Mode.NORMAL
    switched = first.open()  # normal -> DFU: the board re-enumerates on the same port
    switched.close()
    clock.now += 0.5
    (now,) = source.scan()
    assert now.description.mode is Mode.DFU
    # The candidate from before the switch still opens the board as it is now (the retry key uses it).
    again = first.open()
    assert isinstance(again, ParticleDfuDevice) and again.identify().device_id == "ef" * 12
    again.close()


def test_linger_off_reports_only_what_is_there() -> None:
    linger = Linger(0.0)
    assert linger.apply([]) == []


def test_a_serial_port_that_came_back_under_another_name_is_opened_there() -> None:
    listing = [Port("/dev/ttyACM0", 0x2B04, 0xC00D, "1-8:1.0")]
    source = SerialPortSource(comports=lambda: list(listing))
    (candidate,) = source.scan()
    listing[:] = [Port("/dev/ttyACM1", 0x2B04, 0xC00D, "1-8:1.0")]
    device = candidate.open()
    assert isinstance(device, ParticleSerialDevice) and device.port == "/dev/ttyACM1"


def test_the_real_sources_linger() -> None:
    usb_source, serial_source = all_sources(usb_backend=SimulatedUsbBackend())
    assert isinstance(usb_source, UsbParticleSource) and isinstance(serial_source, SerialPortSource)
    assert usb_source.linger.seconds == serial_source.linger.seconds == DEFAULT_LINGER > 1.0
