"""Every injected fault ends in its own error naming block and address, never a hang or a false pass,
and the half-written board can be flashed again."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_tools.particle import pack_module, parse_module
from station.devices.base import FlashImage
from station.devices.particle_dfu import ParticleDfuDevice, find_dfu_devices
from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason, VerifyMismatch
from station.protocols.dfu import DfuBlockRefused, DfuProtocolError, DfuStatusError, Status
from station.sim.dfu_device import RunMode, SimulatedDfuDevice
from station.sim.faults import Fault, FaultKind, FaultPlan, parse_faults
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend

BLOCK = 4096


@pytest.fixture
def bus() -> SimulatedUsbBackend:
    return SimulatedUsbBackend()


def plug(bus: SimulatedUsbBackend, faults: str | FaultPlan, platform: str = "argon") -> SimulatedDfuDevice:
    plan = faults if isinstance(faults, FaultPlan) else FaultPlan(parse_faults(faults))
    return bus.attach(SimulatedDfuDevice(platform, port_path="1-1", timing=TimingModel(enabled=False), faults=plan))


def device(bus: SimulatedUsbBackend, **options: Any) -> ParticleDfuDevice:
    options.setdefault("sleep", lambda _: None)
    (found,) = find_dfu_devices(backend=bus, **options)
    return found


def image() -> FlashImage:
    data = pack_module(bytes(range(256)) * 80, platform_id=12, index=2)  # five 4 KiB blocks
    return FlashImage("user.bin", data, parse_module(data).prefix.start_address, platform_id=12)


def expect_fault(bus: SimulatedUsbBackend, error: type[DeviceError], block: int, reason: Reason) -> DeviceError:
    target = image()
    with pytest.raises(error) as caught:
        device(bus).flash([target])
    assert caught.value.block == block
    assert caught.value.address == target.address + block * BLOCK
    assert caught.value.reason is reason
    assert caught.value.device == "argon at 1-1"
    return caught.value


def assert_not_a_pass(bus: SimulatedUsbBackend) -> None:
    """The half-written board must not verify."""
    with pytest.raises(VerifyMismatch):
        device(bus).verify([image()])


def assert_flashes_again(bus: SimulatedUsbBackend, sim: SimulatedDfuDevice) -> None:
    target = image()
    again = device(bus)
    again.flash([target])
    again.verify([target])
    again.restart()
    assert sim.read(target.address, target.size) == target.data
    assert sim.running is not None and sim.running.mode is RunMode.APPLICATION


def test_disconnect_at_a_block(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "disconnect@2")
    expect_fault(bus, DeviceDisconnected, 2, Reason.DISCONNECTED)
    assert find_dfu_devices(backend=bus) == []  # gone from the bus
    bus.attach(sim)  # re-plugged: power-cycled, flash keeps the first two blocks
    assert_not_a_pass(bus)
    assert_flashes_again(bus, sim)


def test_stall_ends_in_a_timeout(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "stall@1")
    error = expect_fault(bus, DeviceTimeout, 1, Reason.TIMEOUT)
    assert "no answer" in str(error)
    assert_not_a_pass(bus)
    assert_flashes_again(bus, sim)  # no re-plug needed: the next status request finishes the block


def test_corrupt_status_reply(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "corrupt-reply@3")
    expect_fault(bus, DfuProtocolError, 3, Reason.PROTOCOL)
    assert_not_a_pass(bus)
    assert_flashes_again(bus, sim)


def test_error_status_is_reported_and_cleared(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "error-status")  # no block given: the first one
    error = expect_fault(bus, DfuStatusError, 0, Reason.DEVICE_STATUS)
    assert isinstance(error, DfuStatusError) and error.status is Status.ERR_PROG
    assert sim.state.name == "DFU_IDLE"  # the flasher cleared dfuERROR on its way out
    assert_not_a_pass(bus)
    assert_flashes_again(bus, sim)


def test_refused_block_stays_refused_until_replugged(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "refuse-block@4")
    expect_fault(bus, DfuBlockRefused, 4, Reason.REFUSED)
    with pytest.raises(DfuBlockRefused):  # "every time": the same block in the same session
        device(bus).flash([image()])
    assert_not_a_pass(bus)
    bus.attach(sim)
    assert_flashes_again(bus, sim)


def test_slow_poll_beyond_the_limit_times_out_without_waiting(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "slow-poll@1")
    sleeps: list[float] = []
    with pytest.raises(DeviceTimeout, match=r"asks to wait 30\.0 s") as caught:
        device(bus, sleep=sleeps.append).flash([image()])
    assert caught.value.block == 1
    assert sum(sleeps) < 1.0
    assert_not_a_pass(bus)
    assert_flashes_again(bus, sim)


def test_slow_poll_within_the_limit_is_honoured(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "slow-poll@2")
    sleeps: list[float] = []
    target = image()
    patient = device(bus, sleep=sleeps.append, max_poll_wait=60.0)
    patient.flash([target])
    patient.verify([target])
    assert 30.0 in sleeps
    assert sim.read(target.address, target.size) == target.data


def test_faults_that_repeat_fail_every_attempt(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, FaultPlan((Fault(FaultKind.ERROR_STATUS, at=None, once=False),)))
    for _ in range(2):
        with pytest.raises(DfuStatusError):
            device(bus).flash([image()])
    sim.faults = FaultPlan()
    assert_flashes_again(bus, sim)


@pytest.mark.parametrize("platform", ["photon", "p2"])
def test_faults_on_other_flash_families(bus: SimulatedUsbBackend, platform: str) -> None:
    platform_id = {"photon": 6, "p2": 32}[platform]
    data = pack_module(bytes(range(256)) * 80, platform_id=platform_id)
    target = FlashImage("user.bin", data, parse_module(data).prefix.start_address)
    sim = plug(bus, "disconnect@1", platform)
    with pytest.raises(DeviceDisconnected) as caught:
        device(bus).flash([target])
    assert caught.value.address == target.address + BLOCK
    bus.attach(sim)
    flasher = device(bus)
    flasher.flash([target])
    flasher.verify([target])
    assert sim.read(target.address, target.size) == target.data


def test_a_protected_device_is_refused_with_a_clear_error(bus: SimulatedUsbBackend) -> None:
    sim = bus.plug("argon", protected=True, timing=TimingModel(enabled=False))
    with pytest.raises(DeviceError, match="device protection is on") as caught:
        device(bus).flash([image()])
    assert caught.value.reason is Reason.REFUSED
    assert sim.blocks_received == 0
