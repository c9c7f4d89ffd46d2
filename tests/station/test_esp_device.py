"""EspDevice through esptool's API against simulated chips: round trips, every fault, threads, discovery."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from firmware_tools.esp import build_app_image
from station.devices.base import Family, FlashImage, Mode, Phase, Progress, VerifyNote
from station.devices.esp import EspDevice, find_esp_ports
from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason, VerifyMismatch, WrongTarget
from station.sim.esp_loader import SimulatedEsp
from station.sim.faults import FaultPlan, parse_faults
from station.sim.timing import TimingModel

CHIP_NAMES = {"esp32": "ESP32", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}

# Unit tests run the simulators untimed.
OFF = TimingModel(enabled=False)


def app_image(chip: str = "esp32", payload: int = 40000, seed: int = 0) -> FlashImage:
    return FlashImage(
        f"{chip}-app-{seed}.bin", build_app_image(chip=chip, payload_size=payload, seed=seed), 0x10000, "app"
    )


@pytest.fixture
def sim() -> Iterator[SimulatedEsp]:
    with SimulatedEsp("esp32", "24:0a:c4:12:34:56", unsupported_reply="echo", timing=OFF) as chip:
        chip.serve_tcp()
        yield chip


def flash_and_verify(url: str, images: list[FlashImage], **kwargs: object) -> list[Progress]:
    events: list[Progress] = []
    with EspDevice(url, **kwargs) as device:  # type: ignore[arg-type]
        device.flash(images, events.append)
        device.verify(images, events.append)
        device.restart()
    return events


@pytest.mark.parametrize("chip", sorted(CHIP_NAMES))
@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_flashed_image_reads_back_identical(chip: str, stub: bool) -> None:
    image = app_image(chip, seed=3)
    with SimulatedEsp(chip, unsupported_reply="echo", timing=OFF) as sim:
        url = sim.serve_tcp()
        with EspDevice(url, stub=stub) as device:
            identity = device.identify()
            events: list[Progress] = []
            device.flash([image], events.append)
            device.verify([image], events.append)
        assert sim.read_flash(image.address, image.size) == image.data
    assert identity.device_id == sim.device_id and len(identity.device_id) == 12
    assert identity.platform == CHIP_NAMES[chip]
    assert identity.mac == sim.mac
    writes = [e for e in events if e.phase is Phase.WRITE]
    assert writes[0].done == 0 and writes[-1].done == image.size
    assert all(a.done <= b.done for a, b in itertools.pairwise(writes))
    assert all(e.total == image.size and e.image == image.name for e in writes)
    assert events[-1] == Progress(Phase.VERIFY, image.size, image.size, image.name)


def test_several_images_each_at_its_address_uncompressed(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    images = [
        # Only the header matters to the flasher; the test app is too big for the bootloader slot.
        FlashImage("bootloader.bin", build_app_image(payload_size=2000, seed=1)[:0x6000], 0x1000, "bootloader"),
        FlashImage("partitions.bin", b"\xaa\x50" + bytes(range(256)) * 3, 0x8000, "partition-table"),
        app_image(seed=2),
    ]
    flash_and_verify(sim.url, images, compress=False)
    for image in images:
        assert sim.read_flash(image.address, image.size) == image.data
    assert sim.commands["FLASH_DATA"] and not sim.commands["FLASH_DEFL_DATA"]


def test_describe_names_family_port_and_mode() -> None:
    device = EspDevice("/dev/ttyUSB0", port_path="1-1.4", vid=0x10C4, pid=0xEA60)
    described = device.describe()
    assert described.family is Family.ESP and described.mode is Mode.BOOTLOADER
    assert (described.port_path, described.serial_port, described.vid) == ("1-1.4", "/dev/ttyUSB0", 0x10C4)


def test_wrong_chip_image_refused_before_anything_is_written(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    with EspDevice(sim.url) as device, pytest.raises(WrongTarget, match="chip id 9"):
        device.flash([app_image("esp32s3")])
    assert not sim.commands["FLASH_DEFL_BEGIN"] and not sim.commands["FLASH_BEGIN"]


def test_verify_names_the_image_and_address_on_mismatch(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    image = app_image()
    with EspDevice(sim.url) as device:
        device.flash([image])
    flipped = bytes([image.data[1000] ^ 0x01])
    sim.flash.load(image.address + 1000, flipped)  # a bit flipped after programming
    # A new connection has no write of its own to go by: it asks the board for the MD5.
    with EspDevice(sim.url) as device, pytest.raises(VerifyMismatch) as caught:
        device.verify([image])
    assert caught.value.address == image.address
    assert image.name in str(caught.value)


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_verify_after_write_uses_esptools_md5_check_instead_of_asking_twice(sim: SimulatedEsp, stub: bool) -> None:
    assert sim.url is not None
    image = app_image(seed=7, payload=30001)  # not a multiple of 4: esptool pads the checked range
    with EspDevice(sim.url, stub=stub) as device:
        device.flash([image])
        assert sim.commands["SPI_FLASH_MD5"] == 1  # write_flash's own check
        note = device.verify([image])
    assert sim.commands["SPI_FLASH_MD5"] == 1
    assert note == VerifyNote("verified by esptool write-flash MD5", verified=True)


def test_write_flash_md5_failure_is_a_verify_mismatch(sim: SimulatedEsp, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sim.url is not None
    program = sim.flash.program

    def weak_cell(address: int, data: bytes, *, background: bool = False) -> None:  # a bit that will not program
        weak = data[:1] + bytes([data[1] | 0x01]) + data[2:] if len(data) > 2 else data
        program(address, weak, background=background)

    monkeypatch.setattr(sim.flash, "program", weak_cell)
    with EspDevice(sim.url) as device, pytest.raises(VerifyMismatch, match="does not hold"):
        device.flash([app_image(seed=8)])


def test_chip_hint_skips_detection_and_a_wrong_board_is_wrong_target(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    with EspDevice(sim.url, chip="ESP32") as device:
        assert device.identify().platform == "ESP32"
    # An ESP32 ROM refuses GET_SECURITY_INFO (and esptool drains 0.2 s after each refusal): with the
    # chip named, the station checks the magic register only.
    assert sim.commands["SYNC"] == 1 and sim.commands["GET_SECURITY_INFO"] == 0
    sim.commands.clear()
    with EspDevice(sim.url) as device:
        device.identify()
    assert sim.commands["GET_SECURITY_INFO"] == 2
    with EspDevice(sim.url, chip="esp32s3") as device, pytest.raises(WrongTarget, match="not ESP32-S3"):
        device.identify()


def test_one_image_is_compressed_once_for_every_board(monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    from station.devices import esptool_adapter

    esptool_adapter.COMPRESSION_CACHE.clear()
    real = zlib.compress
    calls: list[int] = []

    def counting(data: bytes, level: int = -1, wbits: int = 15) -> bytes:
        calls.append(len(data))
        return real(data, level, wbits)

    # Counted at zlib itself: if esptool compressed some other way, or the cache were bypassed,
    # the count would not be one per image.
    monkeypatch.setattr(zlib, "compress", counting)
    second = app_image(seed=12, payload=20000)
    images = [app_image(seed=11), FlashImage(second.name, second.data, 0x200000, "app")]
    sims = [SimulatedEsp("esp32", unsupported_reply="echo", timing=OFF) for _ in range(3)]
    try:
        for board in sims:
            flash_and_verify(board.serve_tcp(), images)
            for image in images:
                assert board.read_flash(image.address, image.size) == image.data
    finally:
        for board in sims:
            board.stop()
    assert len(calls) == len(images)
    assert esptool_adapter.COMPRESSION_CACHE.hits == len(images) * (len(sims) - 1)


FAULTS = [
    ("disconnect@1", DeviceDisconnected, Reason.DISCONNECTED),
    ("corrupt-reply@1", DeviceError, Reason.PROTOCOL),
    ("error-status@1", DeviceError, Reason.DEVICE_STATUS),
    ("refuse-block@1", DeviceError, Reason.REFUSED),
]


@pytest.mark.parametrize(("spec", "error", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_fault_ends_in_specific_error_and_board_can_be_flashed_again(
    spec: str, error: type[DeviceError], reason: Reason, stub: bool
) -> None:
    image = app_image(seed=5)
    with SimulatedEsp("esp32", faults=FaultPlan(parse_faults(spec)), unsupported_reply="echo", timing=OFF) as sim:
        url = sim.serve_tcp()
        with EspDevice(url, stub=stub) as device, pytest.raises(error) as caught:
            device.flash([image])
        assert caught.value.reason is reason
        assert caught.value.block == 1
        assert caught.value.address is not None and caught.value.address > image.address
        assert sim.read_flash(image.address, image.size) != image.data  # half-written
        flash_and_verify(url, [image], stub=stub)
        assert sim.read_flash(image.address, image.size) == image.data


@pytest.mark.slow
@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_stall_times_out_naming_the_block(stub: bool) -> None:
    image = app_image(seed=6)
    with SimulatedEsp("esp32", faults=FaultPlan(parse_faults("stall@0")), unsupported_reply="echo", timing=OFF) as sim:
        url = sim.serve_tcp()
        with EspDevice(url, stub=stub) as device, pytest.raises(DeviceTimeout) as caught:
            device.flash([image])
        assert caught.value.block == 0 and caught.value.address == image.address
        flash_and_verify(url, [image], stub=stub)
        assert sim.read_flash(image.address, image.size) == image.data


def test_nothing_listening_is_not_found() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceError) as caught:
        EspDevice(f"socket://127.0.0.1:{port}").identify()
    assert caught.value.reason is Reason.NOT_FOUND


def test_silent_port_times_out_connecting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
        with pytest.raises(DeviceTimeout, match="no ESP ROM loader answered"):
            EspDevice(f"socket://127.0.0.1:{port}", connect_attempts=1).identify()
        for conn in accepted:
            conn.close()


def test_boards_flashed_from_threads_keep_their_own_progress_and_output(capfd: pytest.CaptureFixture[str]) -> None:
    chips = ["esp32", "esp32s3", "esp32c3", "esp32", "esp32s3", "esp32c3"]
    sims = [SimulatedEsp(chip, unsupported_reply="echo", timing=OFF) for chip in chips]
    images = [app_image(chip, payload=20000 + 4096 * i, seed=i) for i, chip in enumerate(chips)]
    events: list[list[Progress]] = [[] for _ in chips]
    devices = [EspDevice(sim.serve_tcp(), stub=i % 2 == 0) for i, sim in enumerate(sims)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(chips))

    def work(i: int) -> None:
        try:
            start.wait(timeout=10)
            devices[i].identify()
            devices[i].flash([images[i]], events[i].append)
            devices[i].verify([images[i]], events[i].append)
            devices[i].close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chips))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for sim in sims:
        sim.stop()
    assert not errors
    for i, image in enumerate(images):
        assert sims[i].read_flash(image.address, image.size) == image.data
        writes = [e for e in events[i] if e.phase is Phase.WRITE]
        assert {e.image for e in writes} == {image.name}
        assert {e.total for e in writes} == {image.size}
        assert writes[-1].done == image.size
        said = "\n".join(devices[i].transcript())
        assert f"Wrote {image.size} bytes" in said
        others = {other.size for other in images} - {image.size}
        assert not any(f"Wrote {size} bytes" in said for size in others)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_esptool_output_stays_out_of_stdout_and_in_the_transcript(
    sim: SimulatedEsp, capfd: pytest.CaptureFixture[str]
) -> None:
    assert sim.url is not None
    device = EspDevice(sim.url, chip="esp32")
    device.identify()
    device.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert any("Connecting" in line for line in device.transcript())


def test_pty_board_flashed_then_verified_by_another_session() -> None:
    image = app_image("esp32c3", payload=20000)
    with SimulatedEsp("esp32c3", unsupported_reply="echo", timing=OFF) as sim:
        path = sim.serve_pty()
        with EspDevice(path) as device:
            device.flash([image])
        # No reset line on a pty: the second session finds the stub still running.
        with EspDevice(path) as again:
            again.verify([image])
            assert again.identify().platform == "ESP32-C3"
        assert sim.read_flash(image.address, image.size) == image.data


def test_find_esp_ports_keeps_known_adapters_sorted_by_usb_path() -> None:
    def port(device: str, vid: int | None, pid: int | None, location: str | None) -> SimpleNamespace:
        return SimpleNamespace(device=device, vid=vid, pid=pid, location=location, serial_number="S1", description="d")

    ports = [
        port("/dev/ttyUSB1", 0x1A86, 0x7523, "1-1.3:1.0"),
        port("/dev/ttyUSB0", 0x10C4, 0xEA60, "1-1.2:1.0"),
        port("/dev/ttyACM0", 0x303A, 0x1001, "1-1.4:1.0"),
        port("/dev/ttyUSB2", 0x0403, 0x6001, None),
        port("/dev/ttyACM1", 0x2B04, 0xC00C, "1-1.5:1.0"),  # a Particle board
        port("/dev/ttyS0", None, None, None),
        port("/dev/ttyUSB3", 0x10C4, 0x1234, "1-1.6:1.0"),  # Silicon Labs, not a UART bridge
    ]
    found = find_esp_ports(lambda: ports)
    assert [p.device for p in found] == ["/dev/ttyUSB2", "/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyACM0"]
    assert [p.adapter for p in found] == [
        "FTDI FT232R",
        "Silicon Labs CP2102/CP2102N/CP2104",
        "WCH CH340/CH341",
        "Espressif USB-Serial/JTAG",
    ]
    assert found[1].port_path == "1-1.2" and found[0].port_path == "/dev/ttyUSB2"
    device = found[1].open(baud=460800)
    assert device.describe().port_path == "1-1.2" and device.baud == 460800


def test_modelled_time_of_a_job_is_at_least_its_lower_bound() -> None:
    image = app_image(seed=9)
    timing = TimingModel(enabled=False)  # counts without waiting
    with SimulatedEsp("esp32", timing=timing, unsupported_reply="echo") as sim:
        url = sim.serve_tcp()
        flash_and_verify(url, [image], baud=921600, stub=True, compress=True)
        bound = sim.lower_bound([(image.address, image.data)], baud=921600, stub=True, compress=True)
    assert 0 < bound <= timing.spent
    # The stub's erase and program run behind the wire: counted as overlapped work.
    assert timing.overlapped_by_kind["erase"] > 0 and timing.overlapped_by_kind["program"] > 0
    assert timing.by_kind["uart"] > 0


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom"])
def test_the_modelled_write_is_its_bound_plus_connect_traffic(stub: bool) -> None:
    """The bound is the model's own pipeline: the simulator's timeline for a 1 MiB write differs from it
    only by the sync, register and SPI-probe commands the bound leaves out."""
    image = FlashImage("big.bin", build_app_image(payload_size=1024 * 1024 - 300, seed=12), 0x10000, "app")
    timing = TimingModel(enabled=False)
    with SimulatedEsp("esp32", timing=timing, unsupported_reply="echo") as sim:
        flash_and_verify(sim.serve_tcp(), [image], baud=460800, stub=stub, compress=stub)
        parts = sim.bound_parts([(image.address, image.data)], baud=460800, stub=stub, compress=stub)
    # About 75 commands at 115200 before the write (sync, eFuse reads, SPI probe): < 0.5 s.
    assert parts.total <= timing.spent <= parts.total + 0.5
    if stub:
        # 64 KiB block erases (tBE2) for the aligned part of the region, hidden behind the wire.
        assert parts.overlapped > 0.8 * (timing.overlapped_by_kind["erase"] + timing.overlapped_by_kind["program"])
        assert timing.overlapped_by_kind["erase"] < 20 * 0.150
    else:
        assert parts.overlapped == 0 and parts.device > 2.0  # the ROM erases up front and programs per block


@pytest.mark.slow
def test_esptool_keeps_up_with_the_timed_model() -> None:
    image = app_image("esp32s3", payload=4096, seed=10)
    with SimulatedEsp("esp32s3", timing=TimingModel(enabled=True)) as sim:
        url = sim.serve_tcp()
        flash_and_verify(url, [image])
        assert sim.read_flash(image.address, image.size) == image.data
        assert sim.timing.spent >= sim.lower_bound([(image.address, image.data)])


def test_wrong_chip_argument_is_wrong_target(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    with pytest.raises(WrongTarget, match="ESP32, not ESP32-S3"):
        EspDevice(sim.url, chip="esp32s3", connect_attempts=1).identify()


def test_same_device_object_flashes_again_after_a_lost_link() -> None:
    image = app_image(seed=11)
    with SimulatedEsp(
        "esp32", faults=FaultPlan(parse_faults("disconnect@2")), unsupported_reply="echo", timing=OFF
    ) as sim:
        url = sim.serve_tcp()
        with EspDevice(url, stub=False) as device:
            with pytest.raises(DeviceDisconnected):
                device.flash([image])
            device.flash([image])
            device.verify([image])
        assert sim.read_flash(image.address, image.size) == image.data


def test_image_beyond_the_end_of_flash_is_wrong_target(sim: SimulatedEsp) -> None:
    assert sim.url is not None
    image = FlashImage("big.bin", b"\x5a" * 0x20000, 0x3F0000, "data")
    with EspDevice(sim.url) as device, pytest.raises(WrongTarget, match="will not fit"):
        device.flash([image])


def test_pty_board_that_vanishes_mid_write_comes_back_on_a_new_pty() -> None:
    image = app_image(seed=12)
    with SimulatedEsp(
        "esp32", faults=FaultPlan(parse_faults("disconnect@3")), unsupported_reply="echo", timing=OFF
    ) as sim:
        with EspDevice(sim.serve_pty(), stub=False) as device, pytest.raises(DeviceDisconnected) as caught:
            device.flash([image])
        assert caught.value.block == 3
        flash_and_verify(sim.serve_pty(), [image], stub=False)  # re-plugged: a new tty
        assert sim.read_flash(image.address, image.size) == image.data
