"""The simulated Particle DFU device, driven with plain pyusb calls: it is a real pyusb backend.

Descriptors and strings per platform, the bootloader's state machine and status codes, NOR flash,
manifestation and the boot check, and a normal-mode device switched into DFU by control request.
"""

from __future__ import annotations

import errno
import struct
import zlib
from typing import Any

import pytest
import usb.core
import usb.util
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.particle import ModuleFunction, pack_module
from station.devices.base import FlashImage
from station.devices.particle_dfu import PyUsbTransport
from station.errors import DeviceError
from station.protocols.dfu import DfuSeClient, Request, State, Status, StatusReply
from station.protocols.particle_usb import ServiceReply, ServiceType
from station.sim.dfu_device import (
    PLATFORM_SPECS,
    RunMode,
    SimulatedDfuDevice,
    UsbMode,
)
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend

OUT, IN = 0x21, 0xA1

REFERENCE_STRINGS = {
    "photon": [
        "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
        "@DCT Flash   /0x00000000/01*016Kg",
    ],
    "p1": [
        "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
        "@DCT Flash   /0x00000000/01*016Kg",
        "@Serial Flash   /0x00000000/256*004Kg",
    ],
    "electron": [
        "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg",
        "@DCT Flash   /0x00000000/01*016Kg",
    ],
    "argon": [
        "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka",
        "@DCT Flash   /0x00000000/1*016Ke",
        "@External Flash   /0x80000000/1024*004Kg",
    ],
    "boron": [
        "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka",
        "@DCT Flash   /0x00000000/1*016Ke",
        "@External Flash   /0x80000000/1024*004Kg",
    ],
    "p2": ["@Internal Flash   /0x08000000/2048*004Kg", "@DCT Flash   /0x00000000/1*016Ke"],
}
PRODUCTS = {"photon": "Photon", "p1": "P1", "electron": "Electron", "argon": "Argon", "boron": "Boron", "p2": "P2"}
PIDS = {"photon": 0xD006, "p1": 0xD008, "electron": 0xD00A, "argon": 0xD00C, "boron": 0xD00D, "p2": 0xD020}


@pytest.fixture
def bus() -> SimulatedUsbBackend:
    return SimulatedUsbBackend()


def plug(bus: SimulatedUsbBackend, platform: str, port: str = "1-1", **kw: Any) -> SimulatedDfuDevice:
    return bus.attach(SimulatedDfuDevice(platform, port_path=port, timing=TimingModel(enabled=False), **kw))


def only(bus: SimulatedUsbBackend, **match: int) -> Any:
    dev = usb.core.find(backend=bus, **match)
    assert dev is not None
    return dev


def get_status(dev: Any) -> StatusReply:
    return StatusReply.parse(bytes(dev.ctrl_transfer(IN, Request.GETSTATUS, 0, 0, 6)))


def command(dev: Any, payload: bytes) -> list[StatusReply]:
    dev.ctrl_transfer(OUT, Request.DNLOAD, 0, 0, payload)
    return [get_status(dev), get_status(dev)]


def stalls(call: Any) -> bool:
    try:
        call()
    except usb.core.USBError as exc:
        assert exc.errno == errno.EPIPE, exc
        return True
    return False


@pytest.mark.parametrize("platform", sorted(REFERENCE_STRINGS))
def test_descriptors_and_strings_as_the_bootloader_sends_them(bus: SimulatedUsbBackend, platform: str) -> None:
    sim = plug(bus, platform, "2-1.3", device_id="0123456789abcdef01234567")
    dev = only(bus, idVendor=0x2B04, idProduct=PIDS[platform])
    assert (dev.bus, dev.port_numbers) == (2, (1, 3))
    assert dev.manufacturer == "Particle"
    assert dev.product == f"{PRODUCTS[platform]} DFU Mode"
    assert dev.serial_number == "0123456789abcdef01234567"
    alts = list(dev[0])
    assert [usb.util.get_string(dev, a.iInterface) for a in alts] == REFERENCE_STRINGS[platform]
    for alt in alts:
        assert (alt.bInterfaceClass, alt.bInterfaceSubClass, alt.bInterfaceProtocol) == (0xFE, 0x01, 0x02)
        assert bytes(alt.extra_descriptors) == bytes.fromhex("09210bff0000101a01")
    # The same descriptors as bytes, as a host's GET_DESCRIPTOR sees them.
    raw = bytes(dev.ctrl_transfer(0x80, 6, 0x0200, 0, 512))
    assert struct.unpack_from("<BBH", raw) == (9, 2, len(raw))
    assert raw.count(bytes.fromhex("09210bff0000101a01")) == len(alts)
    device = bytes(dev.ctrl_transfer(0x80, 6, 0x0100, 0, 18))
    assert struct.unpack_from("<HH", device, 8) == (0x2B04, PIDS[platform])
    assert dev.bcdDevice == sim.spec.bcd_device


def test_at_least_the_six_platforms_are_simulated() -> None:
    assert {"photon", "p1", "electron", "argon", "boron", "p2"} <= set(PLATFORM_SPECS)


def test_hotplug_gives_a_new_address_and_kills_old_handles(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    dev = only(bus)
    address = dev.address
    assert get_status(dev).state is State.DFU_IDLE
    bus.detach(sim)
    assert usb.core.find(backend=bus) is None
    with pytest.raises(usb.core.USBError) as caught:
        get_status(dev)
    assert caught.value.errno == errno.ENODEV
    bus.attach(sim)
    again = only(bus)
    assert again.address != address
    assert get_status(again).state is State.DFU_IDLE


def test_status_and_state_machine(bus: SimulatedUsbBackend) -> None:
    plug(bus, "argon")
    dev = only(bus)
    assert get_status(dev) == StatusReply(Status.OK, 0, State.DFU_IDLE, 0)
    # Set address: the work runs after a dfuDNBUSY reply, then dfuDNLOAD-IDLE.
    first, second = command(dev, bytes([0x21]) + (0xB4000).to_bytes(4, "little"))
    assert first.state is State.DFU_DNBUSY and second.state is State.DFU_DNLOAD_IDLE
    assert bytes(dev.ctrl_transfer(IN, Request.GETSTATE, 0, 0, 1)) == bytes([State.DFU_DNLOAD_IDLE])
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    assert get_status(dev).state is State.DFU_IDLE
    # CLRSTATUS outside dfuERROR stalls and leaves dfuERROR / errUNKNOWN.
    assert stalls(lambda: dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b""))
    assert get_status(dev) == StatusReply(Status.ERR_UNKNOWN, 0, State.DFU_ERROR, 0)
    # In dfuERROR only status requests are valid; ABORT stalls.
    assert stalls(lambda: dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b""))
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")
    assert get_status(dev) == StatusReply(Status.OK, 0, State.DFU_IDLE, 0)
    # UPLOAD with wValue 1 is invalid.
    assert stalls(lambda: dev.ctrl_transfer(IN, Request.UPLOAD, 1, 0, 16))
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")


def test_dfuse_commands_with_particle_deviations(bus: SimulatedUsbBackend) -> None:
    plug(bus, "boron", "1-1")
    plug(bus, "electron", "1-2")
    boron = only(bus, idProduct=0xD00D)
    electron = only(bus, idProduct=0xD00A)
    assert bytes(boron.ctrl_transfer(IN, Request.UPLOAD, 0, 0, 64)) == bytes([0x00, 0x21, 0x41, 0xFA, 0xFB])
    assert bytes(electron.ctrl_transfer(IN, Request.UPLOAD, 0, 0, 64)) == bytes([0x00, 0x21, 0x41])
    for dev in (boron, electron):
        dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    # Mass erase is refused with errTARGET, unknown commands with errSTALLEDPKT, unprotect errUNKNOWN.
    for payload, code in (
        (b"\x41", Status.ERR_TARGET),
        (b"\x55", Status.ERR_STALLEDPKT),
        (b"\x92", Status.ERR_UNKNOWN),
    ):
        busy, after = command(boron, payload)
        assert busy.state is State.DFU_DNBUSY
        assert (after.state, after.status) == (State.DFU_ERROR, code)
        boron.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")
    # Set address with the wrong length.
    assert command(boron, b"\x21\x00\x00")[1].status is Status.ERR_UNKNOWN


def write_block(dev: Any, address: int, data: bytes) -> StatusReply:
    command(dev, bytes([0x21]) + address.to_bytes(4, "little"))
    dev.ctrl_transfer(OUT, Request.DNLOAD, 2, 0, data)
    assert get_status(dev).state is State.DFU_DNBUSY
    return get_status(dev)


def erase(dev: Any, address: int) -> StatusReply:
    return command(dev, bytes([0x41]) + address.to_bytes(4, "little"))[1]


def read_block(dev: Any, address: int, length: int) -> bytes:
    command(dev, bytes([0x21]) + address.to_bytes(4, "little"))
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    data = bytes(dev.ctrl_transfer(IN, Request.UPLOAD, 2, 0, length))
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    return data


def test_writing_an_unerased_sector_corrupts_it_as_nor_flash_does(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    dev = only(bus)
    sector = 0x080A0000
    assert read_block(dev, sector, 64) == b"\xff" * 64  # factory-fresh flash reads erased
    first = bytes(range(64))
    assert write_block(dev, sector, first).state is State.DFU_DNLOAD_IDLE
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    second = bytes(0xFF - b for b in range(64))
    # Without an erase the device accepts the write, but programming only clears bits.
    assert write_block(dev, sector, second).status is Status.OK
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    corrupted = read_block(dev, sector, 64)
    assert corrupted == bytes(a & b for a, b in zip(first, second, strict=True)) == b"\x00" * 64
    assert corrupted != second
    # Erasing the sector (128 KiB on the STM32F2) brings back 0xFF; then the write sticks.
    assert erase(dev, sector + 0x1234).status is Status.OK
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    assert sim.read(sector, 0x20000) == b"\xff" * 0x20000
    write_block(dev, sector, second)
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    assert read_block(dev, sector, 64) == second


def test_protected_and_unmapped_addresses_fail_with_their_status(bus: SimulatedUsbBackend) -> None:
    plug(bus, "photon")
    dev = only(bus)
    after = write_block(dev, 0x08000000, b"\x00" * 16)  # the bootloader's read-only sectors
    assert (after.state, after.status) == (State.DFU_ERROR, Status.ERR_WRITE)
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")
    assert erase(dev, 0x08000000).status is Status.ERR_ERASE
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")
    after = write_block(dev, 0x08100000, b"\x00" * 16)
    assert after.status is Status.ERR_ADDRESS
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")


def test_block_numbers_use_the_bootloaders_4096_byte_formula(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    dev = only(bus)
    for page in (0xB4000, 0xB5000, 0xB6000):
        erase(dev, page)
    command(dev, bytes([0x21]) + (0xB4000).to_bytes(4, "little"))
    for block, fill in ((2, 0x11), (4, 0x33)):
        dev.ctrl_transfer(OUT, Request.DNLOAD, block, 0, bytes([fill]) * 16)
        get_status(dev)
        get_status(dev)
    assert sim.read(0xB4000, 16) == b"\x11" * 16
    assert sim.read(0xB5000, 16) == b"\xff" * 16
    assert sim.read(0xB6000, 16) == b"\x33" * 16


def user_module(platform_id: int, payload: bytes = b"\xa5" * 3000) -> bytes:
    return pack_module(payload, platform_id=platform_id, index=2 if platform_id in (12, 13) else 1)


def flash_raw(dev: Any, address: int, data: bytes) -> None:
    for page in range(address & ~0xFFF, address + len(data), 0x1000):
        erase(dev, page)
    command(dev, bytes([0x21]) + address.to_bytes(4, "little"))
    for block, offset in enumerate(range(0, len(data), 4096)):
        dev.ctrl_transfer(OUT, Request.DNLOAD, block + 2, 0, data[offset : offset + 4096])
        get_status(dev)
        assert get_status(dev).state is State.DFU_DNLOAD_IDLE
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")


def leave(dev: Any) -> StatusReply:
    dev.ctrl_transfer(OUT, Request.DNLOAD, 2, 0, b"")
    return get_status(dev)


def test_leave_manifests_resets_and_runs_the_checked_module(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon", device_id="e00fce68aaaaaaaaaaaaaaaa")
    dev = only(bus)
    module = user_module(12)
    flash_raw(dev, 0xB4000, module)
    assert leave(dev).state is State.DFU_MANIFEST  # Gen3 reports manifestation
    with pytest.raises(usb.core.USBError) as caught:  # then it resets: the handle is dead
        get_status(dev)
    assert caught.value.errno == errno.ENODEV
    assert sim.running is not None and sim.running.mode is RunMode.APPLICATION
    (check,) = sim.running.modules
    assert (check.address, check.function, check.platform_id, check.crc_ok) == (0xB4000, 5, 12, True)
    assert check.size == len(module)
    normal = only(bus)
    assert (normal.idProduct, normal.serial_number) == (0xC00C, "e00fce68aaaaaaaaaaaaaaaa")
    assert sim.usb_mode is UsbMode.NORMAL


def test_gen2_reports_dnload_idle_during_manifestation(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    dev = only(bus)
    assert leave(dev).state is State.DFU_DNLOAD_IDLE
    only(bus, idProduct=0xC006)
    assert sim.running is not None and sim.running.mode is RunMode.APPLICATION


def test_boot_check_catches_a_bad_crc(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "boron")
    dev = only(bus)
    module = bytearray(user_module(13))
    module[100] ^= 0xFF
    flash_raw(dev, 0xB4000, bytes(module))
    leave(dev)
    only(bus, idProduct=0xC00D)  # a bad user part: Device OS comes up in safe mode
    assert sim.running is not None and sim.running.mode is RunMode.SAFE_MODE
    assert not sim.running.modules[0].crc_ok


def test_a_bad_system_part_keeps_the_bootloader_in_dfu_mode(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "photon")
    dev = only(bus)
    system = bytearray(
        pack_module(b"\x11" * 5000, platform_id=6, function=ModuleFunction.SYSTEM_PART, start_address=0x08020000)
    )
    system[-1] ^= 1
    flash_raw(dev, 0x08020000, bytes(system))
    leave(dev)
    only(bus, idProduct=0xD006)
    assert sim.running is not None and sim.running.mode is RunMode.DFU


def test_a_module_for_another_platform_does_not_run(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    dev = only(bus)
    flash_raw(dev, 0xB4000, user_module(13))  # a Boron user part on an Argon
    leave(dev)
    only(bus)
    assert sim.running is not None and sim.running.mode is RunMode.SAFE_MODE
    assert not sim.running.modules[0].platform_ok


def service(dev: Any, kind: ServiceType, index: int, value: int = 0) -> ServiceReply:
    return ServiceReply.parse(bytes(dev.ctrl_transfer(0xC0, kind, value, index, 64)))


def test_normal_mode_device_enters_dfu_on_the_control_request(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "p2", mode="normal", device_id="0a10aced202194944a0442f4")
    dev = only(bus)
    assert (dev.idProduct, dev.product) == (0xC020, "P2")
    assert [i.bInterfaceClass for i in dev[0]] == [0x02, 0x0A, 0xFF]
    assert bytes(dev.ctrl_transfer(0xC0, 0x50, 0, 30, 64)) == sim.spec.system_version.encode()
    init = service(dev, ServiceType.INIT, 50)
    assert init.status == 0 and init.request_id is not None
    check = service(dev, ServiceType.CHECK, init.request_id)
    assert (check.status, check.result) == (0, 0)
    with pytest.raises(usb.core.USBError):
        dev.ctrl_transfer(0xC0, 0x50, 0, 30, 64)
    again = only(bus)
    assert (again.idProduct, again.serial_number) == (0xD020, "0a10aced202194944a0442f4")
    assert sim.usb_mode is UsbMode.DFU
    assert usb.util.get_string(again, again[0][(0, 0)].iInterface) == REFERENCE_STRINGS["p2"][0]


def test_unknown_service_request_is_answered_not_supported(bus: SimulatedUsbBackend) -> None:
    plug(bus, "argon", mode="normal")
    dev = only(bus)
    init = service(dev, ServiceType.INIT, 999)
    assert service(dev, ServiceType.CHECK, init.request_id or 0).result == -120
    assert service(dev, ServiceType.CHECK, 4242).status == 5  # NOT_FOUND


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_timing_model_charges_usb_erase_and_program_times(bus: SimulatedUsbBackend) -> None:
    fake = FakeClock()
    timing = TimingModel(clock=fake.clock, sleep=fake.sleep)
    sim = bus.attach(SimulatedDfuDevice("photon", port_path="1-1", timing=timing, clock=fake.clock))
    dev = only(bus)
    timing.reset()
    erase(dev, 0x080A0000)  # one 128 KiB STM32F2 sector: 1 s typical
    assert timing.by_kind["erase"] == pytest.approx(1.0)
    write_block(dev, 0x080A0000, b"\x00" * 4096)  # 1024 words x 16 us
    assert timing.by_kind["program"] == pytest.approx(4096 / 4 * 16e-6)
    assert timing.by_kind["usb"] > 0
    assert fake.slept == pytest.approx(timing.spent, rel=0.01)
    image = FlashImage("user", b"\x00" * 10000, 0x080A0000)
    bound = sim.lower_bound([image])
    assert 1.0 < bound < 1.2  # dominated by the sector erase


def test_device_ids_and_ports_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        SimulatedDfuDevice("toaster", port_path="1-1")
    with pytest.raises(ValueError, match="USB location"):
        SimulatedDfuDevice("argon", port_path="COM3")
    with pytest.raises(ValueError, match="24 lower-case hex"):
        SimulatedDfuDevice("argon", "XYZ", port_path="1-1")
    a = SimulatedDfuDevice("argon", port_path="1-1", timing=TimingModel(enabled=False))
    assert len(a.device_id) == 24 and zlib.crc32(a.device_id.encode()) >= 0


def test_two_devices_cannot_share_a_port(bus: SimulatedUsbBackend) -> None:
    plug(bus, "argon", "1-1")
    with pytest.raises(ValueError, match="already holds"):
        plug(bus, "boron", "1-1")


def test_device_protection_makes_memory_erase_only_and_refuses_access(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "boron", protected=True)
    dev = only(bus)
    strings = [usb.util.get_string(dev, a.iInterface) for a in dev[0]]
    assert strings[0] == "@Internal Flash   /0x00000000/1*004Kb,47*004Kb,192*004Kb,4*004Kb,4*004Kb,8*004Kb"
    assert usb.util.get_string(dev, 0xFA) == "sm=p"
    after = erase(dev, 0xB4000)
    assert (after.state, after.status, after.string_index) == (State.DFU_ERROR, Status.ERR_VENDOR, 10)
    assert usb.util.get_string(dev, after.string_index) == "Device is in protected mode"
    dev.ctrl_transfer(OUT, Request.CLRSTATUS, 0, 0, b"")
    command(dev, bytes([0x21]) + (0xB4000).to_bytes(4, "little"))  # setting the pointer is allowed
    dev.ctrl_transfer(OUT, Request.ABORT, 0, 0, b"")
    assert stalls(lambda: dev.ctrl_transfer(IN, Request.UPLOAD, 2, 0, 64))
    assert get_status(dev).status is Status.ERR_VENDOR
    with pytest.raises(ValueError, match="no device protection"):
        SimulatedDfuDevice("photon", port_path="1-9", protected=True)
    assert sim.protected


def test_plug_picks_the_next_free_port(bus: SimulatedUsbBackend) -> None:
    first = bus.plug("argon", timing=TimingModel(enabled=False))
    second = bus.plug("p2", "00112233445566778899aabb", timing=TimingModel(enabled=False), mode="normal")
    assert (first.port_path, second.port_path) == ("1-1", "1-2")
    assert bus.device_at("1-2") is second and second.usb_mode is UsbMode.NORMAL
    bus.detach(first)
    assert bus.plug("boron", timing=TimingModel(enabled=False)).port_path == "1-1"


_requests = st.lists(
    st.one_of(
        st.tuples(st.just("out"), st.sampled_from([0, 1, 4, 6, 7]), st.integers(0, 6), st.binary(max_size=9)),
        st.tuples(st.just("in"), st.sampled_from([2, 3, 5, 9]), st.integers(0, 6), st.integers(0, 64)),
    ),
    max_size=30,
)


@settings(max_examples=120, deadline=None)
@given(requests=_requests, platform=st.sampled_from(["photon", "argon", "p2"]))
def test_any_request_sequence_gets_a_reply_or_a_usb_error(
    requests: list[tuple[str, int, int, Any]], platform: str
) -> None:
    bus = SimulatedUsbBackend()
    sim = plug(bus, platform)
    dev = only(bus)
    for direction, request, value, data in requests:
        try:
            if direction == "out":
                dev.ctrl_transfer(OUT, request, value, 0, data)
            else:
                dev.ctrl_transfer(IN, request, value, 0, data)
        except usb.core.USBError as exc:
            assert exc.errno in (errno.EPIPE, errno.ENODEV)
            if exc.errno == errno.ENODEV:  # it left DFU mode (leave, detach): a fresh enumeration
                dev = only(bus)
                if sim.usb_mode is UsbMode.NORMAL:
                    return
        if sim.usb_mode is UsbMode.NORMAL:
            return
        assert isinstance(sim.state, State)
    # Whatever happened, the station's client brings it back to dfuIDLE (after DETACH: a fresh enumeration).
    dev = only(bus)
    if sim.usb_mode.value == "normal":
        return
    before = sim.resets
    client = DfuSeClient(PyUsbTransport(dev, name="sim"), sleep=lambda _: None)
    try:
        reply = client.go_idle()
    except DeviceError:
        sim.tick()
        assert sim.resets != before  # only a board that rebooted on the way may refuse
        return
    assert reply == StatusReply(Status.OK, 0, State.DFU_IDLE, 0)


def test_upload_past_the_end_of_memory_is_a_short_read(bus: SimulatedUsbBackend) -> None:
    sim = plug(bus, "argon")
    sim.preload(0x100000 - 100, b"\x5a" * 100)
    dev = only(bus)
    assert read_block(dev, 0x100000 - 100, 4096) == b"\x5a" * 100  # how dfu-util knows to stop
