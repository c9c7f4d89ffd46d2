"""The station's Particle DFU flasher against simulated devices on a simulated USB bus, as the line uses it."""

from __future__ import annotations

import array
import fcntl
import os
import pty
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.errors import FirmwareError
from firmware_tools.particle import ModuleFunction, pack_module, parse_module
from station.devices.base import Family, FlashImage, Mode, Phase, Progress
from station.devices.particle_dfu import (
    ParticleDfuDevice,
    enter_dfu_via_serial,
    find_dfu_devices,
    find_normal_mode_devices,
)
from station.errors import DeviceError, InputError, VerifyMismatch, WrongTarget
from station.sim.dfu_device import RunMode, SimulatedDfuDevice, UsbMode
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend
from tests.conftest import fixture_files

_TCGETS2 = 0x802C542A
PLATFORM_IDS = {"photon": 6, "p1": 8, "electron": 10, "argon": 12, "boron": 13, "p2": 32}


@pytest.fixture
def bus() -> SimulatedUsbBackend:
    return SimulatedUsbBackend()


def plug(bus: SimulatedUsbBackend, platform: str, port: str = "1-1", **kw: Any) -> SimulatedDfuDevice:
    return bus.attach(SimulatedDfuDevice(platform, port_path=port, timing=TimingModel(enabled=False), **kw))


def device_at(bus: SimulatedUsbBackend, port: str = "1-1", **options: Any) -> ParticleDfuDevice:
    options.setdefault("sleep", lambda _: None)
    (device,) = [d for d in find_dfu_devices(backend=bus, **options) if d.port_path == port]
    return device


def user_image(platform: str, payload: bytes) -> FlashImage:
    platform_id = PLATFORM_IDS[platform]
    data = pack_module(payload, platform_id=platform_id, index=2 if platform in ("argon", "boron") else 1)
    module = parse_module(data)
    return FlashImage(
        f"{platform}-user.bin",
        data,
        module.prefix.start_address,
        module_function=int(module.prefix.function),
        platform_id=platform_id,
    )


def payload(seed: int, size: int) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(size))


@pytest.mark.parametrize("platform", sorted(PLATFORM_IDS))
def test_flash_verify_read_back_and_restart(bus: SimulatedUsbBackend, platform: str) -> None:
    sim = plug(bus, platform, "1-1.4", device_id="e00fce681f2bbc3b2b5a1cd7")
    image = user_image(platform, payload(7, 9000))
    device = device_at(bus, "1-1.4")
    description = device.describe()
    assert description.family is Family.PARTICLE_DFU and description.mode is Mode.DFU
    assert (description.vid, description.pid) == (0x2B04, 0xD000 | PLATFORM_IDS[platform])
    assert description.usb_serial_number == "e00fce681f2bbc3b2b5a1cd7"
    identity = device.identify()
    assert (identity.device_id, identity.platform, identity.platform_id) == (
        "e00fce681f2bbc3b2b5a1cd7",
        platform,
        PLATFORM_IDS[platform],
    )
    events: list[Progress] = []
    device.flash([image], events.append)
    device.verify([image], events.append)
    assert sim.read(image.address, image.size) == image.data
    assert device.read(image.address, image.size) == image.data  # and through the flasher's UPLOAD
    for phase in (Phase.ERASE, Phase.WRITE, Phase.VERIFY):
        seen = [e for e in events if e.phase is phase]
        assert seen[-1].done == seen[-1].total > 0
        assert [e.done for e in seen] == sorted(e.done for e in seen)
        assert {e.image for e in seen} == {image.name}
    device.restart()
    assert device.running_firmware() == f"Device OS {sim.spec.system_version}"
    assert sim.running is not None and sim.running.mode is RunMode.APPLICATION
    assert [m.address for m in sim.running.modules] == [image.address]
    assert sim.usb_mode is UsbMode.NORMAL


def test_several_images_go_where_their_headers_say(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    system = pack_module(
        payload(1, 20000), platform_id=6, function=ModuleFunction.SYSTEM_PART, index=1, start_address=0x08020000
    )
    images = [
        FlashImage("system-part1", system, 0x08020000, kind="system-part"),
        user_image("photon", payload(2, 4000)),
    ]
    device = device_at(bus)
    device.flash(images)
    device.verify(images)
    for image in images:
        assert sim.read(image.address, image.size) == image.data
    device.restart()
    assert sim.running is not None
    assert [(m.function, m.crc_ok) for m in sim.running.modules] == [(4, True), (5, True)]


def test_only_the_covered_pages_are_erased(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    image = user_image("argon", payload(3, 5000))  # 0xB4000..: two 4 KiB pages
    before = b"\x12" * 4096
    after_page = image.address + 2 * 4096
    sim.preload(image.address - 4096, before)
    sim.preload(after_page, before)
    sim.preload(image.address, b"\x00" * 8192)  # old firmware under the image: must be erased
    device = device_at(bus)
    device.flash([image])
    device.verify([image])
    assert sim.read(image.address - 4096, 4096) == before
    assert sim.read(after_page, 4096) == before
    assert sim.read(image.address + image.size, 2 * 4096 - image.size) == b"\xff" * (2 * 4096 - image.size)


def test_dct_and_external_flash_pick_their_alt_settings(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    dct = FlashImage("dct", b"\x01\x02\x03\x04", 0x1000, kind="dct")
    external = FlashImage("asset", payload(9, 6000), 0x80010000, kind="asset")
    device = device_at(bus)
    assert device.alt_for(dct).alt == 1
    assert device.alt_for(external).alt == 2
    assert device.alt_for(user_image("argon", b"x")).alt == 0
    device.flash([dct, external])
    device.verify([dct, external])
    assert sim.read(0x1000, 4, alt=1) == b"\x01\x02\x03\x04"
    assert sim.read(0x80010000, 6000, alt=2) == external.data


def test_a_bootloader_that_calls_its_dct_alt_dcd_flash_still_gets_the_dct(bus: SimulatedUsbBackend) -> None:
    # nRF52840 bootloaders around Device OS 2.3.1 name alt 1 "@DCD Flash" (device-os DcdMal).
    sim = plug(bus, "argon")
    strings = list(sim.memory_strings)
    assert strings[1].startswith("@DCT Flash")
    strings[1] = strings[1].replace("@DCT Flash", "@DCD Flash")
    sim.memory_strings = tuple(strings)
    dct = FlashImage("dct", b"\x05\x06\x07\x08", 0x1000, kind="dct")
    device = device_at(bus)
    assert device.alt_for(dct).alt == 1 and device.alt_for(dct).memory.name == "DCD Flash"
    assert device.alt_for(user_image("argon", b"x")).alt == 0  # and the DCD alt is not taken for internal flash
    device.flash([dct])
    device.verify([dct])
    assert sim.read(0x1000, 4, alt=1) == b"\x05\x06\x07\x08"


def test_reflashing_over_old_firmware_erases_first(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "electron")
    old, new = user_image("electron", payload(1, 7000)), user_image("electron", payload(200, 7000))
    device = device_at(bus)
    device.flash([old])
    device.flash([new])
    device.verify([new])
    assert sim.read(new.address, new.size) == new.data


def test_verify_names_the_first_differing_address(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "boron")
    image = user_image("boron", payload(5, 9000))
    device = device_at(bus)
    device.flash([image])
    sim.flash[0].program(image.address + 5000, b"\x00")  # a bit flips to 0 after the write
    with pytest.raises(VerifyMismatch) as caught:
        device.verify([image])
    assert caught.value.address == image.address + 5000
    assert caught.value.block == 1


def test_images_that_do_not_belong_are_refused_before_touching_flash(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    device = device_at(bus)
    with pytest.raises(WrongTarget, match="platform 12"):
        device.flash([user_image("argon", b"x" * 100)])
    with pytest.raises(WrongTarget, match="does not fit"):
        device.flash([FlashImage("bootloader", b"\x00" * 100, 0x08000000)])  # read-only sectors
    with pytest.raises(WrongTarget):
        device.flash([FlashImage("huge", b"\x00" * 0x100, 0x080FFF80)])  # runs off the end
    with pytest.raises(InputError):
        device.flash([FlashImage("empty", b"", 0x080A0000)])
    assert sim.blocks_received == 0


def test_discovery_lists_only_particle_devices_in_dfu_mode(bus: SimulatedUsbBackend) -> None:
    plug(bus, "argon", "1-2", device_id="aaaaaaaaaaaaaaaaaaaaaaaa")
    plug(bus, "p2", "1-1.3", device_id="bbbbbbbbbbbbbbbbbbbbbbbb")
    plug(bus, "boron", "1-4", mode="normal", device_id="cccccccccccccccccccccccc")
    found = find_dfu_devices(backend=bus)
    assert [(d.port_path, d.identify().device_id) for d in found] == [
        ("1-1.3", "bbbbbbbbbbbbbbbbbbbbbbbb"),
        ("1-2", "aaaaaaaaaaaaaaaaaaaaaaaa"),
    ]
    (normal,) = find_normal_mode_devices(backend=bus)
    assert normal.describe().mode is Mode.NORMAL and normal.port_path == "1-4"


def test_a_normal_mode_device_is_switched_into_dfu_and_flashed(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "boron", "1-4", mode="normal", device_id="cccccccccccccccccccccccc")
    (device,) = find_normal_mode_devices(backend=bus, sleep=lambda _: None)
    identity = device.identify()
    assert identity.device_id == "cccccccccccccccccccccccc"
    assert identity.firmware == f"Device OS {sim.spec.system_version}"
    image = user_image("boron", payload(4, 6000))
    device.flash([image])
    assert sim.usb_mode.value == "dfu"
    device.verify([image])
    device.restart()
    assert device.running_firmware() == f"Device OS {sim.spec.system_version}"
    assert sim.usb_mode is UsbMode.NORMAL
    assert sim.read(image.address, image.size) == image.data
    assert sim.running is not None and sim.running.mode is RunMode.APPLICATION


def test_normal_mode_device_that_never_comes_back_times_out(bus: SimulatedUsbBackend) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    # This board takes far longer to reboot than the flasher is willing to wait.
    sim = plug(bus, "argon", "1-4", mode="normal", clock=lambda: clock[0], reset_delay=1000.0)
    (device,) = find_normal_mode_devices(backend=bus, clock=lambda: clock[0], sleep=sleep, dfu_timeout=3.0)
    with pytest.raises(DeviceError, match="did not come back in DFU mode") as caught:
        device.enter_dfu()
    assert caught.value.reason.value == "timeout"
    assert 3.0 <= clock[0] < 5.0
    assert sim.usb_mode is UsbMode.NORMAL


class FakeSerial:
    opened: list[tuple[str, int]] = []

    def __init__(self, port: str, *, baudrate: int, timeout: float) -> None:
        FakeSerial.opened.append((port, baudrate))

    def close(self) -> None:
        raise OSError("device reset")


def test_serial_trick_opens_the_port_at_14400_baud() -> None:
    FakeSerial.opened.clear()
    enter_dfu_via_serial("/dev/ttyACM0", serial_factory=FakeSerial)
    assert FakeSerial.opened == [("/dev/ttyACM0", 14400)]

    def refuse(port: str, **_: Any) -> None:
        raise OSError("no such port")

    with pytest.raises(DeviceError, match="14400 baud"):
        enter_dfu_via_serial("/dev/ttyACM9", serial_factory=refuse)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the pty's speed with Linux TCGETS2")
def test_serial_trick_on_a_real_pty() -> None:
    master, slave = pty.openpty()
    try:
        enter_dfu_via_serial(os.ttyname(slave))
        # struct termios2: four flag words, c_line + 19 c_cc bytes, then c_ispeed and c_ospeed.
        words = array.array("I", [0] * 11)
        fcntl.ioctl(slave, _TCGETS2, words)
        assert (words[9], words[10]) == (14400, 14400)  # the line coding the device's USB stack sees
    finally:
        os.close(master)
        os.close(slave)


def test_several_devices_flashed_from_threads_at_once(bus: SimulatedUsbBackend) -> None:
    platforms = ["photon", "p1", "electron", "argon", "boron", "p2", "argon", "boron"]
    sims = [plug(bus, platform, f"1-{n + 1}") for n, platform in enumerate(platforms)]
    devices = {d.port_path: d for d in find_dfu_devices(backend=bus, sleep=lambda _: None)}
    images = {sim.port_path: user_image(sim.platform.name, payload(n, 12000 + 997 * n)) for n, sim in enumerate(sims)}
    errors: list[BaseException] = []
    progress: dict[str, list[Progress]] = {port: [] for port in devices}

    def work(port: str) -> None:
        try:
            device = devices[port]
            device.flash([images[port]], progress[port].append)
            device.verify([images[port]], progress[port].append)
            device.restart()
        except BaseException as exc:  # reported below with the port
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(port,)) for port in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for sim in sims:
        image = images[sim.port_path]
        assert sim.read(image.address, image.size) == image.data
        bus.enumerate_devices()  # let each device finish its reset
        assert sim.running is not None and sim.running.mode is RunMode.APPLICATION
        assert progress[sim.port_path][-1] == Progress(Phase.VERIFY, image.size, image.size, image.name)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("platform", ["photon", "argon", "p2"])
def test_modelled_time_of_a_job_is_at_least_the_stated_lower_bound(bus: SimulatedUsbBackend, platform: str) -> None:
    fake = FakeTime()
    timing = TimingModel(clock=fake.clock, sleep=fake.sleep)
    sim = bus.attach(SimulatedDfuDevice(platform, port_path="1-1", timing=timing, clock=fake.clock))
    image = user_image(platform, payload(11, 60000))
    bound = sim.lower_bound([image])
    timing.reset()
    device = device_at(bus, clock=fake.clock, sleep=fake.sleep)
    device.flash([image])
    device.verify([image])
    device.restart()
    assert bound <= timing.spent < 1.5 * bound
    assert timing.by_kind["erase"] > 0 and timing.by_kind["program"] > 0 and timing.by_kind["usb"] > 0


@settings(max_examples=25, deadline=None)
@given(
    offset=st.integers(0, 40).map(lambda n: n * 0x1000 + 0xB4000), size=st.integers(1, 20000), seed=st.integers(0, 255)
)
def test_any_range_reads_back_identical(offset: int, size: int, seed: int) -> None:
    bus = SimulatedUsbBackend()
    sim = plug(bus, "boron")
    sim.preload(offset, b"\x00" * 0x1000)  # something to erase
    image = FlashImage("raw", payload(seed, size), offset)
    device = device_at(bus)
    device.flash([image])
    device.verify([image])
    assert sim.read(offset, size) == image.data
    assert device.read(offset, size) == image.data


@pytest.mark.parametrize("path", fixture_files("particle"), ids=lambda p: p.name)
def test_real_modules_flash_and_boot_or_are_refused_before_writing(path: Path) -> None:
    data = path.read_bytes()
    try:
        module = parse_module(data)
    except FirmwareError:
        pytest.skip("not a module")
    names = {6: "photon", 8: "p1", 10: "electron", 12: "argon", 13: "boron", 14: "xenon", 15: "esomx"}
    names |= {23: "bsom", 25: "b5som", 26: "tracker", 32: "p2", 35: "msom"}
    platform = names.get(module.prefix.platform_id)
    if platform is None:
        pytest.skip(f"platform {module.prefix.platform_id} is not simulated")
    bus = SimulatedUsbBackend()
    sim = plug(bus, platform)
    image = FlashImage(path.name, data, module.prefix.start_address, platform_id=module.prefix.platform_id)
    device = device_at(bus)
    try:
        device.flash([image])
    except WrongTarget:
        assert sim.blocks_received == 0  # e.g. a bootloader: not writable over DFU
        return
    device.verify([image])
    device.restart()
    report = sim.running
    assert report is not None
    assert report.modules[0].address == image.address
    assert report.modules[0].crc_ok is module.crc_ok


def test_running_firmware_waits_out_the_manifestation_countdown(bus: SimulatedUsbBackend) -> None:
    fake = FakeTime()
    sim = plug(bus, "argon", clock=fake.clock, reset_delay=2.0)
    image = user_image("argon", payload(1, 3000))
    device = device_at(bus, clock=fake.clock, sleep=fake.sleep)
    device.flash([image])
    device.restart()
    assert sim.usb_mode is UsbMode.DFU  # still counting down in dfuMANIFEST-WAIT-RESET
    assert device.running_firmware() == f"Device OS {sim.spec.system_version}"
    assert 2.0 <= fake.now < 3.0


def test_running_firmware_says_when_the_bootloader_refused_to_boot(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    broken = bytearray(
        pack_module(payload(3, 9000), platform_id=6, function=ModuleFunction.SYSTEM_PART, start_address=0x08020000)
    )
    broken[-2] ^= 0xFF  # a CRC that does not match
    image = FlashImage("system-part1", bytes(broken), 0x08020000)
    device = device_at(bus)
    device.flash([image])
    device.verify([image])  # the bytes are what was sent: only the boot check can tell
    device.restart()
    assert device.running_firmware() == "DFU mode"
    assert device.confirm([image]) is False  # the line fails this board with verify-mismatch
    assert sim.running is not None and sim.running.mode is RunMode.DFU


def test_a_device_without_permissions_says_how_to_fix_it(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    sim.access_denied = True
    (device,) = find_dfu_devices(backend=bus)  # listed: enumeration needs no access
    assert device.describe().usb_serial_number is None
    for attempt in (device.identify, lambda: device.flash([user_image("argon", b"x" * 10)])):
        with pytest.raises(DeviceError) as caught:
            attempt()
        assert caught.value.reason.value == "permission"
        assert "60-benchflash.rules" in str(caught.value)


def test_p1_serial_flash_and_dct_share_address_zero(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "p1")
    serial_flash = FlashImage("ota.bin", payload(21, 10000), 0x0, kind="serial-flash")
    dct = FlashImage("dct.bin", payload(22, 100), 0x100, kind="dct")
    device = device_at(bus)
    assert device.alt_for(serial_flash).memory.name == "Serial Flash"
    assert device.alt_for(dct).memory.name == "DCT Flash"
    device.flash([serial_flash, dct])
    device.verify([serial_flash, dct])
    assert sim.read(0x0, 10000, alt=2) == serial_flash.data
    assert sim.read(0x100, 100, alt=1) == dct.data
    assert sim.read(0x0, 0x100, alt=1) == b"\xff" * 0x100


def test_a_radio_stack_goes_without_its_prefix_as_particle_cli_writes_it(bus: SimulatedUsbBackend) -> None:
    # A SoftDevice module carries DROP_MODULE_INFO: DFU writes its payload at the module's start
    # address without the 24-byte prefix (reference dfu-dfuse.md §9.3); YModem sends it whole.
    import hashlib
    import zlib

    packed = bytearray(
        pack_module(
            payload(9, 9000), platform_id=12, function=ModuleFunction.RADIO_STACK, index=0, start_address=0x1000
        )
    )
    packed[9] |= 0x01  # DROP_MODULE_INFO
    packed[-38:-6] = hashlib.sha256(packed[:-38]).digest()
    packed[-4:] = zlib.crc32(packed[:-4]).to_bytes(4, "big")
    data = bytes(packed)
    assert parse_module(data).crc_ok
    image = FlashImage("softdevice.bin", data, 0x1000, kind="radio-stack", module_function=8, platform_id=12)
    sim = plug(bus, "argon")
    device = device_at(bus)
    device.flash([image])
    device.verify([image])
    assert sim.read(0x1000, len(data) - 24) == data[24:]
    assert sim.read(0x1000 + len(data) - 24, 24) == b"\xff" * 24  # nothing shifted past the payload


@pytest.mark.parametrize(("system_version", "cleared"), [(5800, True), (2300, False)])
def test_a_256k_app_blanks_the_old_128k_app_location_as_particle_cli_does(
    bus: SimulatedUsbBackend, system_version: int, cleared: bool
) -> None:
    from firmware_tools.particle import Dependency

    old = pack_module(payload(3, 6000), platform_id=12, index=1, start_address=0xD4000)
    new = pack_module(
        payload(4, 6000),
        platform_id=12,
        index=2,
        dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, system_version)],
    )
    start = parse_module(new).prefix.start_address
    assert start == 0xB4000
    sim = plug(bus, "argon")
    sim.preload(0xD4000, old)
    image = FlashImage("app.bin", new, start, module_function=5, module_index=2, platform_id=12)
    device = device_at(bus)
    device.flash([image])
    device.verify([image])
    assert sim.read(start, len(new)) == new
    assert (sim.read(0xD4000, 4096) == b"\xff" * 4096) is cleared
