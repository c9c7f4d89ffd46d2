"""A board pulled and plugged back in is the same board: it keeps what was flashed into it."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from firmware_tools.particle import ModuleFunction, pack_module, platform_id_from
from station.demo.sample_release import blinky_payload
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.devices.base import Device, FlashImage
from station.devices.particle_serial import ParticleSerialDevice
from station.sim.particle_serial import SimulatedSerialDevice
from station.sim.timing import TimingModel

from .images import esp_image, particle_image


@pytest.fixture
def bench() -> Iterator[SimulatedBench]:
    with SimulatedBench(timing=False, rng=random.Random(11)) as b:
        yield b


def _open(bench: SimulatedBench, slot: str) -> Device:
    return next(c for c in bench.scan() if c.slot == slot).open()


def _flash(bench: SimulatedBench, slot: str, image: FlashImage) -> None:
    device = _open(bench, slot)
    try:
        device.flash([image])
        device.verify([image])
        device.restart()
    finally:
        device.close()


def test_replugged_serial_and_esp_boards_keep_what_was_flashed(bench: SimulatedBench) -> None:
    serial, esp = bench.attach_all(parse_simulate_spec("argon-serial,esp32"))
    module, app = particle_image("argon"), esp_image()
    _flash(bench, serial, module)
    _flash(bench, esp, app)
    ids = (bench.device_id(serial), bench.device_id(esp))
    for slot in (serial, esp):
        bench.detach(slot)
        assert slot not in {c.slot for c in bench.scan()}
        bench.reattach(slot)
    assert (bench.device_id(serial), bench.device_id(esp)) == ids
    assert bench.holds(serial, module), "the serial board lost its installed module on re-plug"
    assert bench.holds(esp, app)
    # And it still talks on its (new) pty: identified, its module verified.
    device = _open(bench, serial)
    try:
        assert device.identify().device_id == ids[0]
        device.verify([module])
    finally:
        device.close()


def test_a_stopped_serial_simulator_starts_again_in_listening_mode() -> None:
    image = particle_image("photon")
    with SimulatedSerialDevice("photon", timing=TimingModel(enabled=False)) as sim:
        with ParticleSerialDevice(sim.port, port_path="sim-1") as device:
            device.flash([image])
        sim.stop()
        second = sim.start()
        with ParticleSerialDevice(second, port_path="sim-1") as device:
            assert device.identify().device_id == sim.device_id
            device.verify([image])
        assert sim.installed(int(ModuleFunction.USER_PART), 1) == image.data


def test_gen3_takes_the_128k_compat_user_part_at_0xd4000() -> None:
    # What `fwtool pack --platform argon` writes by default: user part index 1 at 0xD4000.
    data = pack_module(
        blinky_payload(5000, seed="compat"),
        platform_id=platform_id_from("argon"),
        function=ModuleFunction.USER_PART,
        index=1,
        start_address=0xD4000,
    )
    image = FlashImage("compat.bin", data, 0xD4000, module_function=5, module_index=1, platform_id=12)
    with SimulatedSerialDevice("argon", timing=TimingModel(enabled=False)) as sim:
        with ParticleSerialDevice(sim.port, port_path="sim-1") as device:
            device.flash([image])
            device.verify([image])
        assert sim.installed(int(ModuleFunction.USER_PART), 1) == data
        # A board fresh from the factory has no module in that slot.
        assert [m.index for m in sim.modules() if m.function == int(ModuleFunction.USER_PART)] == [2, 1]
