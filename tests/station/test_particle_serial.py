"""The Particle serial flasher against the simulated device on a real pty: identify, flash, verify, faults."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial

from firmware_tools.particle import ModuleFunction, pack_module
from station.devices.base import Family, FlashImage, Mode, Phase, Progress
from station.devices.particle_serial import ParticleSerialDevice, SerialStream, enter_dfu, find_serial_devices
from station.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    InputError,
    Reason,
    VerifyMismatch,
    WrongTarget,
)
from station.protocols import ymodem
from station.protocols.listening import ListeningClient
from station.protocols.ymodem import PacketRefused, TransferCancelled, UnexpectedReply
from station.sim.faults import FaultPlan, parse_faults
from station.sim.particle_serial import Mode as SimMode
from station.sim.particle_serial import SimulatedSerialDevice
from station.sim.timing import TimingModel

USER = int(ModuleFunction.USER_PART)
SYSTEM = int(ModuleFunction.SYSTEM_PART)
PLATFORM_IDS = {"photon": 6, "p1": 8, "electron": 10, "argon": 12, "boron": 13, "p2": 32}
USER_INDEX = {"photon": 1, "p1": 1, "electron": 1, "argon": 2, "boron": 2, "p2": 1}

Sims = Callable[..., SimulatedSerialDevice]


@pytest.fixture
def sims() -> Iterator[Sims]:
    started: list[SimulatedSerialDevice] = []

    def make(platform: str = "photon", **kwargs: object) -> SimulatedSerialDevice:
        kwargs.setdefault("stall_recover", 0.3)
        kwargs.setdefault("timing", TimingModel(enabled=False))
        sim = SimulatedSerialDevice(platform, **kwargs)  # type: ignore[arg-type]
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def device(port: str, **kwargs: object) -> ParticleSerialDevice:
    options: dict[str, object] = {"timeout": 0.5, "batch_gap": 0.02, "retries": 2, "reconnect_timeout": 5.0}
    options.update(kwargs)
    return ParticleSerialDevice(port, **options)  # type: ignore[arg-type]


def app(platform: str, size: int = 20_000, *, seed: int = 1, version: int = 6, index: int | None = None) -> FlashImage:
    payload = bytes((i * seed + seed) & 0xFF for i in range(size))
    data = pack_module(
        payload,
        platform_id=PLATFORM_IDS[platform],
        index=USER_INDEX[platform] if index is None else index,
        module_version=version,
    )
    return FlashImage(f"{platform}-app.bin", data, 0, module_function=USER)


def test_identify_wifi_device(sims: Sims) -> None:
    sim = sims("photon", device_id="0123456789abcdef01234567")
    with device(sim.port) as dev:
        identity = dev.identify()
        assert identity.device_id == "0123456789abcdef01234567"
        assert (identity.platform, identity.platform_id, identity.firmware) == ("photon", 6, "2.3.0")
        assert identity.mac == sim.mac
        description = dev.describe()
        assert description.family is Family.PARTICLE_SERIAL and description.mode is Mode.LISTENING
        assert description.serial_port == sim.port


def test_identify_cellular_device_uses_the_keyed_form(sims: Sims) -> None:
    sim = sims("boron", device_id="e00fce68ffffffffffffffff")
    with device(sim.port) as dev:
        identity = dev.identify()
    assert (identity.device_id, identity.platform, identity.mac) == ("e00fce68ffffffffffffffff", "boron", None)


@pytest.mark.parametrize("platform", sorted(PLATFORM_IDS))
def test_flashed_module_is_installed_identical_and_verifies(sims: Sims, platform: str) -> None:
    sim = sims(platform)
    image = app(platform)
    events: list[Progress] = []
    with device(sim.port) as dev:
        dev.flash([image], events.append)
        dev.verify([image])
        assert dev.last_verification[0].sha_checked
        running = dev.running_firmware()
    assert sim.installed(USER, USER_INDEX[platform]) == image.data
    writes = [e for e in events if e.phase is Phase.WRITE]
    assert [e.done for e in writes] == sorted(e.done for e in writes)
    assert writes[-1].done == writes[-1].total == image.size
    assert events[-1].phase is Phase.RESTART
    assert running is not None and image.sha256 != "" and "module v6" in running


def test_several_images_in_one_call(sims: Sims) -> None:
    sim = sims("photon")
    system = pack_module(
        os.urandom(30_000),
        platform_id=6,
        function=ModuleFunction.SYSTEM_PART,
        index=2,
        module_version=2302,
        start_address=0x08060000,
    )
    images = [FlashImage("system-part2.bin", system, 0, kind="system-part"), app("photon", seed=3)]
    with device(sim.port) as dev:
        dev.flash(images)
        dev.verify(images)
        checks = dev.last_verification
    assert sim.installed(SYSTEM, 2) == system
    assert sim.installed(USER, 1) == images[1].data
    # Device OS reports a hash for user parts only; the system part is checked by version and validity.
    assert [c.sha_checked for c in checks] == [False, True]


def test_wrong_platform_is_refused_before_sending(sims: Sims) -> None:
    sim = sims("photon")
    with device(sim.port) as dev, pytest.raises(WrongTarget) as err:
        dev.flash([app("argon")])
    assert "platform 12" in err.value.message
    assert sim.transfers == []


def test_not_a_module_and_damaged_module_are_input_errors(sims: Sims) -> None:
    sim = sims("photon")
    good = app("photon")
    damaged = FlashImage("damaged.bin", good.data[:100] + b"\x00" + good.data[101:], 0)
    with device(sim.port) as dev:
        with pytest.raises(InputError, match="CRC-32"):
            dev.flash([damaged])
        with pytest.raises(InputError, match="not a Particle module"):
            dev.flash([FlashImage("zeros.bin", bytes(10), 0)])
    assert sim.transfers == []


def test_device_validation_failure_is_reported_with_its_message(sims: Sims) -> None:
    """A module for a slot the device does not have: Device OS refuses it after the transfer."""
    sim = sims("photon")
    image = app("photon", index=2)
    with device(sim.port) as dev, pytest.raises(TransferCancelled) as err:
        dev.flash([image])
    assert "Validation failed: -1310" in err.value.message  # SYSTEM_ERROR_OTA_UNSUPPORTED_MODULE
    assert sim.installed(USER, 2) is None and sim.installed(USER, 1) is None


@pytest.mark.parametrize(
    ("damage", "code"),
    [("crc", -1330), ("platform", -1360), ("truncated", -1370), ("not-a-module", -1370)],
)
def test_simulator_validates_what_it_receives_as_device_os_does(sims: Sims, damage: str, code: int) -> None:
    """Bypassing the flasher's own checks: the device refuses after the transfer, naming the error."""
    sim = sims("photon")
    good = app("photon").data
    data = {
        "crc": good[:-1] + bytes((good[-1] ^ 1,)),
        "platform": app("argon").data,
        "truncated": good[:-100],
        "not-a-module": bytes(4000),
    }[damage]
    port = serial.Serial(sim.port, 28800, timeout=1)
    try:
        stream = SerialStream(port, "sim")
        client = ListeningClient(stream, batch_gap=0.05)
        client.start_flash(2.0)
        with pytest.raises(TransferCancelled):
            ymodem.send_file(stream, "x.bin", data, wait_for_start=False, wait_before_batch_end=False, timeout=1)
        said = client.drain(0.3).decode()
    finally:
        port.close()
    assert f"Validation failed: {code}" in said
    assert sim.installed(USER, 1) is None


@dataclass(frozen=True)
class FaultCase:
    spec: str
    error: type[DeviceError] | None
    block: int | None


FAULTS = [
    FaultCase("disconnect@3", DeviceDisconnected, 3),
    FaultCase("stall@2", DeviceTimeout, 2),
    FaultCase("corrupt-reply@4", UnexpectedReply, 4),
    FaultCase("refuse-block@5", PacketRefused, 5),
    FaultCase("error-status@1", TransferCancelled, 1),
    FaultCase("disconnect@0", DeviceDisconnected, 0),
    FaultCase("error-status@22", TransferCancelled, 22),  # 20 data packets: 21 = EOT, 22 = end of batch
    FaultCase("slow-poll@2", None, None),
]


@pytest.mark.parametrize("case", FAULTS, ids=[c.spec for c in FAULTS])
def test_each_fault_ends_in_its_error_and_the_device_can_be_flashed_again(sims: Sims, case: FaultCase) -> None:
    # A hung board recovers (watchdog) only after the host has given up: 3 tries x 0.5 s.
    sim = sims("photon", faults=FaultPlan(parse_faults(case.spec)), slow_reply=0.2, stall_recover=1.8)
    image = app("photon")
    with device(sim.port) as dev:
        if case.error is None:
            dev.flash([image])
        else:
            with pytest.raises(case.error) as err:
                dev.flash([image])
            assert err.value.block == case.block
            assert err.value.address == max(case.block - 1, 0) * 1024 or case.block > 20
            assert sim.installed(USER, 1) is None  # half-written: nothing installed, old app kept
    # A re-plugged board may come back on another pty; a hung one recovers once the host gives up.
    deadline = time.monotonic() + 5
    while sim.mode is not SimMode.LISTENING and time.monotonic() < deadline:
        time.sleep(0.02)
    with device(sim.port) as dev:
        dev.flash([image])
        dev.verify([image])
    assert sim.installed(USER, 1) == image.data


def test_verify_detects_a_different_module(sims: Sims) -> None:
    sim = sims("argon")
    flashed, other = app("argon", seed=1), app("argon", seed=2)
    newer = app("argon", seed=1, version=7)
    with device(sim.port) as dev:
        dev.flash([flashed])
        dev.verify([flashed])
        with pytest.raises(VerifyMismatch, match="SHA-256"):
            dev.verify([other])
        with pytest.raises(VerifyMismatch, match="version 6 on the device, 7 in the image"):
            dev.verify([newer])


def test_device_os_6_refuses_ymodem(sims: Sims) -> None:
    sim = sims("argon", system_version="6.2.0")
    with device(sim.port) as dev:
        with pytest.raises(DeviceError, match="removed YModem") as err:
            dev.flash([app("argon")])
        assert err.value.reason is Reason.REFUSED
    assert sim.transfers == []


def test_device_os_6_refusal_after_f_is_recognised(sims: Sims) -> None:
    """Not knowing the version, a client still reads the prompt, the four CANs 100 ms later, the refusal."""
    sim = sims("argon", system_version="6.2.0", timing=TimingModel())
    port = serial.Serial(sim.port, 28800, timeout=1)
    try:
        client = ListeningClient(SerialStream(port, "sim"), batch_gap=0.05)
        with pytest.raises(DeviceError) as err:
            client.start_flash(2.0)
    finally:
        port.close()
    assert err.value.reason is Reason.REFUSED and "Device OS 6" in err.value.message


def test_line_coding_enters_listening_mode_and_x_leaves_it(sims: Sims) -> None:
    sim = sims("photon", listening=False)
    assert sim.mode is SimMode.NORMAL
    with device(sim.port) as dev:
        assert dev.identify().platform == "photon"  # opening at 28800 put it in listening mode
        dev.restart()
    deadline = time.monotonic() + 2
    while sim.mode is not SimMode.NORMAL and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.mode is SimMode.NORMAL


def test_14400_baud_reboots_into_dfu(sims: Sims) -> None:
    sim = sims("photon")
    port = sim.port
    enter_dfu(port)
    assert sim.entered_dfu.wait(2.0)
    assert sim.mode is SimMode.GONE
    with pytest.raises(DeviceDisconnected):
        enter_dfu("/dev/does-not-exist-benchflash")


def test_find_serial_devices_picks_particle_ports() -> None:
    @dataclass
    class Port:
        device: str
        vid: int | None
        pid: int | None
        location: str | None = None
        serial_number: str | None = None

    ports = [
        Port("/dev/ttyACM1", 0x2B04, 0xC00C, "1-1.2:1.0", "e00fce68aaaaaaaaaaaaaaaa"),
        Port("/dev/ttyACM0", 0x2B04, 0xC006, "1-1.1:1.0", "0123456789abcdef01234567"),
        Port("/dev/ttyACM2", 0x2B04, 0xD006),  # DFU mode: not a serial port of ours
        Port("/dev/ttyUSB0", 0x10C4, 0xEA60),  # a CP210x, e.g. an ESP32 board
        Port("/dev/ttyACM3", 0x1D50, 0x607D),  # Spark Core: never flashed over serial
        Port("/dev/ttyS0", None, None),
    ]
    found = find_serial_devices(comports=lambda: ports)
    assert [d.port for d in found] == ["/dev/ttyACM0", "/dev/ttyACM1"]
    first = found[0].describe()
    assert (first.port_path, first.vid, first.pid, first.usb_serial_number) == (
        "1-1.1",
        0x2B04,
        0xC006,
        "0123456789abcdef01234567",
    )


def test_unopenable_port_is_a_disconnect_error() -> None:
    with pytest.raises(DeviceDisconnected, match="cannot open serial port"):
        device("/dev/does-not-exist-benchflash").identify()


def test_a_port_without_permission_says_how_to_get_it() -> None:
    def refuse(port: str, *args: object, **kwargs: object) -> serial.Serial:
        raise serial.SerialException(f"[Errno 13] could not open port {port}: [Errno 13] Permission denied: '{port}'")

    with pytest.raises(DeviceError) as caught:
        ParticleSerialDevice("/dev/ttyACM7", serial_factory=refuse).identify()
    assert caught.value.reason is Reason.PERMISSION
    assert caught.value.hint is not None and "udev/60-benchflash.rules" in caught.value.hint
    assert (Path(__file__).parents[2] / "udev" / "60-benchflash.rules").is_file()


def test_lower_bound_is_what_the_model_charges(sims: Sims) -> None:
    sim = sims("argon")
    image = app("argon", size=50_000)
    with device(sim.port) as dev:
        dev.flash([image])
    assert sim.timing.spent == pytest.approx(sim.lower_bound([image.data]))
    assert sim.lower_bound([image.data, image]) == pytest.approx(2 * sim.lower_bound([image.data]))


def test_uart_model_charges_at_the_port_baud_rate(sims: Sims) -> None:
    usb, uart = sims("photon"), sims("photon", uart=True)
    image = app("photon", size=50_000)
    for sim in (usb, uart):
        with device(sim.port) as dev:
            dev.flash([image])
        assert sim.timing.spent == pytest.approx(sim.lower_bound([image.data]))
    # 28800 baud moves 2880 bytes a second: the link alone is some 17 s for 50 kB.
    assert uart.timing.by_kind["link"] > 17 > 1 > usb.timing.by_kind["link"]


def test_enabled_timing_model_makes_the_device_wait(sims: Sims) -> None:
    """Timing on: the simulator sleeps what the model charges (a fake clock keeps the test fast)."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    timing = TimingModel(enabled=True, clock=lambda: now[0], sleep=sleep)
    sim = sims("argon", timing=timing)
    image = app("argon", size=30_000)
    with device(sim.port) as dev:
        dev.flash([image])
    assert sum(slept) == pytest.approx(timing.spent, abs=0.01)
    assert timing.spent == pytest.approx(sim.lower_bound([image.data]))


def test_eight_devices_flashed_from_threads_at_once(sims: Sims) -> None:
    platforms = ["photon", "p1", "electron", "argon", "boron", "p2", "photon", "argon"]
    boards = [(sims(p), app(p, size=8_000 + 1_000 * i, seed=i + 1)) for i, p in enumerate(platforms)]
    errors: list[BaseException] = []

    def flash(sim: SimulatedSerialDevice, image: FlashImage) -> None:
        try:
            with device(sim.port, timeout=2.0) as dev:
                identity = dev.identify()
                assert identity.device_id == sim.device_id
                dev.flash([image])
                dev.verify([image])
        except BaseException as exc:  # reported below, with the board
            errors.append(exc)

    threads = [threading.Thread(target=flash, args=board) for board in boards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    for (sim, image), platform in zip(boards, platforms, strict=True):
        assert sim.installed(USER, USER_INDEX[platform]) == image.data


def test_serial_stream_maps_every_way_a_port_dies_to_a_disconnect() -> None:
    class Dead:
        in_waiting = 0

        def __init__(self, error: Exception) -> None:
            self.error = error

        @property
        def timeout(self) -> float:
            return -1.0

        @timeout.setter
        def timeout(self, value: float) -> None:
            raise self.error  # pyserial re-applies the termios here

        def read(self, size: int) -> bytes:
            raise self.error

        def write(self, data: bytes) -> int:
            raise self.error

    errors = [
        serial.SerialException("device reports readiness to read but returned no data"),
        OSError(5, "Input/output error"),
        ValueError("Failed to set custom baud rate (28800): [Errno 5] Input/output error"),
    ]
    for error in errors:
        stream = SerialStream(Dead(error), "ttyX")  # type: ignore[arg-type]
        with pytest.raises(DeviceDisconnected):
            stream.read(1, 0.1)
        with pytest.raises(DeviceDisconnected):
            stream.write(b"x")
