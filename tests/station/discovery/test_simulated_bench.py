"""The simulated bench as a Source: hotplug while scanning, unplug mid-flash, re-plug, read-back."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from station.demo.simulated_bench import SimDeviceSpec, SimulatedBench, bench_from_spec, parse_simulate_spec
from station.devices.base import Family, FlashImage, Mode, Phase, Progress
from station.errors import DeviceDisconnected, InputError, Reason

from .images import esp_image, particle_image


@pytest.fixture
def bench() -> Iterator[SimulatedBench]:
    with SimulatedBench(timing=False, rng=random.Random(7)) as b:
        yield b


def _candidate(bench: SimulatedBench, slot: str):  # type: ignore[no-untyped-def]
    return next(c for c in bench.scan() if c.slot == slot)


def test_one_board_of_each_family_is_found_identified_and_described(bench: SimulatedBench) -> None:
    slots = bench.attach_all(parse_simulate_spec("argon-dfu,photon-serial,esp32s3"))
    assert slots == ["sim-1", "sim-2", "sim-3"]
    found = {c.slot: c for c in bench.scan()}
    assert [found[s].description.family for s in slots] == [Family.PARTICLE_DFU, Family.PARTICLE_SERIAL, Family.ESP]
    assert [found[s].description.mode for s in slots] == [Mode.DFU, Mode.LISTENING, Mode.BOOTLOADER]
    assert str(found["sim-2"].description.serial_port).startswith("/dev/pts/")
    assert str(found["sim-3"].description.serial_port).startswith("socket://127.0.0.1:")
    for slot in slots:
        device = found[slot].open()
        try:
            identity = device.identify()
        finally:
            device.close()
        assert identity.device_id == bench.device_id(slot)
        assert device.describe().port_path == slot
    assert [s.spec.kind for s in bench.slots()] == ["argon-dfu", "photon-serial", "esp32s3"]


def test_attach_while_another_thread_scans(bench: SimulatedBench) -> None:
    seen: set[str] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def scanner() -> None:
        while not stop.is_set():
            try:
                seen.update(c.slot for c in bench.scan())
            except BaseException as exc:  # the test fails below if a scan ever raised
                errors.append(exc)
            time.sleep(0.005)

    thread = threading.Thread(target=scanner)
    thread.start()
    try:
        for spec in parse_simulate_spec("argon-dfu:2,boron-serial,esp32c3,photon-dfu"):
            bench.attach(spec)
            time.sleep(0.02)
        bench.detach("sim-2")
        deadline = time.monotonic() + 5
        while {f"sim-{n}" for n in range(1, 6)} - seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen == {f"sim-{n}" for n in range(1, 6)}
    assert "sim-2" not in {c.slot for c in bench.scan()}


@pytest.mark.parametrize(
    ("kind", "image"),
    [
        ("argon-dfu", particle_image("argon", size=64 * 1024)),
        ("argon-serial", particle_image("argon", size=64 * 1024)),
        ("esp32", esp_image("esp32", size=200_000)),
    ],
    ids=["dfu", "serial", "esp"],
)
def test_unplug_mid_flash_fails_fast_with_a_disconnect_and_a_replug_flashes_again(
    bench: SimulatedBench, kind: str, image: FlashImage
) -> None:
    slot = bench.attach(parse_simulate_spec(kind)[0])
    device = _candidate(bench, slot).open()
    device.identify()
    pulled: list[float] = []

    def progress(p: Progress) -> None:
        if p.phase is Phase.WRITE and p.done > 0 and not pulled:
            pulled.append(time.monotonic())
            threading.Thread(target=bench.detach, args=(slot,)).start()

    with pytest.raises(DeviceDisconnected) as caught:
        device.flash([image], progress)
    assert caught.value.reason is Reason.DISCONNECTED
    assert time.monotonic() - pulled[0] < 5
    device.close()
    assert slot not in {c.slot for c in bench.scan()}

    assert bench.reattach(slot) == slot
    device = _candidate(bench, slot).open()
    try:
        assert device.identify().device_id == bench.device_id(slot)
        device.flash([image])
        device.verify([image])
        device.restart()
    finally:
        device.close()
    assert bench.holds(slot, image)


def test_read_back_helpers(bench: SimulatedBench) -> None:
    dfu, serial, esp = bench.attach_all(parse_simulate_spec("photon-dfu,photon-serial,esp32"))
    photon, app = particle_image("photon"), esp_image()
    for slot, image in ((dfu, photon), (serial, photon), (esp, app)):
        assert not bench.holds(slot, image)
        device = _candidate(bench, slot).open()
        try:
            device.flash([image])
            device.restart()
        finally:
            device.close()
        assert bench.holds(slot, image)
    assert bench.read_flash(dfu, photon.address, photon.size) == photon.data
    assert bench.read_flash(esp, 0x10000, app.size) == app.data
    assert bench.installed(serial, 5, 1) == photon.data
    assert bench.running(dfu) == "application"
    with pytest.raises(TypeError):
        bench.read_flash(serial, 0, 16)


def test_faults_from_the_spec_reach_the_simulator(bench: SimulatedBench) -> None:
    (slot,) = bench.attach_all(parse_simulate_spec("argon-dfu!disconnect@2"))
    image = particle_image("argon", size=32 * 1024)
    device = _candidate(bench, slot).open()
    with pytest.raises(DeviceDisconnected) as caught:
        device.flash([image])
    device.close()
    assert caught.value.block is not None


def test_fixed_identities_and_close_stops_every_server() -> None:
    bench = SimulatedBench(timing=False)
    esp_slot = bench.attach(SimDeviceSpec(Family.ESP, "esp32", device_id="24:0a:c4:00:00:01"))
    serial_slot = bench.attach(SimDeviceSpec(Family.PARTICLE_SERIAL, "argon", device_id="ab" * 12))
    assert bench.device_id(esp_slot) == "240ac4000001"
    assert bench.device_id(serial_slot) == "ab" * 12
    pty = _candidate(bench, serial_slot).description.serial_port
    bench.close()
    bench.close()
    assert bench.scan() == []
    assert all(not s.attached for s in bench.slots())
    with pytest.raises(RuntimeError):
        bench.attach(SimDeviceSpec(Family.ESP, "esp32"))
    import serial

    with pytest.raises(serial.SerialException):
        serial.Serial(pty, timeout=0.1).read(1)


def test_bench_from_spec_starts_nothing_for_a_bad_spec() -> None:
    with pytest.raises(InputError):
        bench_from_spec("argon-dfu,nonsense")
    with bench_from_spec("argon-dfu:2", timing=False) as bench:
        assert [c.slot for c in bench.scan()] == ["sim-1", "sim-2"]


def test_a_normal_mode_board_is_listed_as_such_and_switched_into_dfu_on_open(bench: SimulatedBench) -> None:
    (slot,) = bench.attach_all(parse_simulate_spec("p2-normal"))
    assert bench.slots()[0].spec.kind == "p2-normal"
    (candidate,) = bench.scan()
    assert candidate.description.mode is Mode.NORMAL
    device = candidate.open()
    try:
        assert device.describe().mode is Mode.DFU
        assert device.identify().platform == "p2"
    finally:
        device.close()
    assert [c.description.mode for c in bench.scan()] == [Mode.DFU]
    assert [c.slot for c in bench.scan()] == [slot]


@pytest.mark.parametrize(
    ("kind", "image"),
    [("argon-serial!disconnect@3", particle_image("argon", size=16 * 1024)), ("esp32!disconnect@1", esp_image())],
    ids=["serial", "esp"],
)
def test_a_replugged_board_has_already_had_its_fault(bench: SimulatedBench, kind: str, image: FlashImage) -> None:
    (slot,) = bench.attach_all(parse_simulate_spec(kind))
    device = _candidate(bench, slot).open()
    with pytest.raises(DeviceDisconnected):
        device.flash([image])
    device.close()
    bench.detach(slot)
    bench.reattach(slot)
    device = _candidate(bench, slot).open()
    try:
        device.flash([image])
        device.verify([image])
    finally:
        device.close()
    assert bench.holds(slot, image)
