"""The simulated ESP loader without esptool: SLIP, NOR flash, eFuse MAC, the session state machine, timing."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.sim.esp_chips import (
    ESP32,
    ESP32C3,
    ESP32S3,
    ChipProfile,
    chip_profile,
    crc8_mac,
    mac_registers,
    parse_mac,
)
from station.sim.esp_flash import SECTOR_SIZE, W25Q32JV_MAXIMUM, W25Q32JV_TYPICAL, FlashRangeError, NorFlash
from station.sim.esp_loader import SimulatedEsp, lower_bound
from station.sim.esp_session import (
    DATA_HEADER,
    REQUEST_HEADER,
    RESPONSE_HEADER,
    SYNC_PAYLOAD,
    EspChip,
    LoaderMode,
    LoaderSession,
    Op,
    UnsupportedReply,
    checksum,
)
from station.sim.esp_slip import SlipDecoder, slip_encode
from station.sim.faults import Fault, FaultKind, FaultPlan
from station.sim.timing import TimingModel

MAC = bytes.fromhex("240ac4123456")

# Unit tests run the simulators untimed.
OFF = TimingModel(enabled=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5), st.binary(max_size=20))
def test_slip_round_trip_any_payloads_split_anywhere(payloads: list[bytes], junk: bytes) -> None:
    junk = junk.replace(b"\xc0", b"")
    stream = junk + b"".join(slip_encode(p) for p in payloads)
    decoder = SlipDecoder()
    frames: list[bytes] = []
    for i in range(0, len(stream), 7):
        frames += decoder.feed(stream[i : i + 7])
    assert frames == payloads


def test_slip_escapes_and_bad_escape_drops_frame() -> None:
    assert slip_encode(b"\xc0\xdb") == b"\xc0\xdb\xdc\xdb\xdd\xc0"
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0ab\xdb\x01cd\xc0\xc0ok\xc0") == [b"ok"]
    assert decoder.dropped == 1


def test_nor_flash_programs_only_clear_bits_and_erases_sectors() -> None:
    flash = NorFlash(64 * 1024)
    assert flash.read(0, 4) == b"\xff" * 4
    flash.program(0x10, b"\x0f\xf0")
    flash.program(0x10, b"\xf0\xff")  # programming again cannot set bits back
    assert flash.read(0x10, 2) == b"\x00\xf0"
    assert flash.erase(0x0FFF, 2) == 2  # touches two sectors
    assert flash.read(0, 2 * SECTOR_SIZE) == b"\xff" * (2 * SECTOR_SIZE)
    with pytest.raises(FlashRangeError):
        flash.program(64 * 1024 - 1, b"\x00\x00")
    assert flash.capacity_id == 16


def test_flash_costs_are_charged_from_the_datasheet() -> None:
    timing = TimingModel(enabled=False)
    flash = NorFlash(64 * 1024, timing=timing)
    flash.erase(0, 3 * SECTOR_SIZE)
    flash.program(0, b"\x00" * 512)
    assert timing.by_kind["erase"] == pytest.approx(3 * W25Q32JV_TYPICAL.sector_erase)
    assert timing.by_kind["program"] == pytest.approx(2 * W25Q32JV_TYPICAL.page_program)
    timing.reset()
    # The ROM's erase_area: sectors up to the next 64 KiB boundary (a whole block's worth from an
    # aligned start), then 64 KiB block erases (tBE2 150 ms instead of 16 x 45 ms), then sectors.
    big = NorFlash(1024 * 1024, timing=timing)
    big.erase(0x3000, 0x21000)  # sectors 3..35: 13 head sectors, block 1, 4 tail sectors
    t = W25Q32JV_TYPICAL
    assert timing.by_kind["erase"] == pytest.approx(17 * t.sector_erase + t.block_erase)
    timing.reset()
    big.erase(0x10000, 0x40000)  # aligned: a head of 16 sectors, then 3 blocks
    assert timing.by_kind["erase"] == pytest.approx(16 * t.sector_erase + 3 * t.block_erase)
    slow = TimingModel(enabled=False)
    NorFlash(64 * 1024, timing=slow, times=W25Q32JV_MAXIMUM).erase(0, SECTOR_SIZE)
    assert slow.by_kind["erase"] == pytest.approx(0.400)  # the datasheet maximum, when asked for


def test_esp32_mac_efuse_words_carry_the_crc() -> None:
    # esp-serial-protocol.md §6: espefuse shows "CRC 0xf5 OK" for 24:0a:c4:12:34:56.
    assert crc8_mac(MAC) == 0xF5
    words = mac_registers(ESP32, MAC)
    word1, word2 = words[0x3FF5A004], words[0x3FF5A008]
    # esptool: pack word 2 then word 1 big-endian, drop the first two bytes.
    assert struct.pack(">II", word2, word1)[2:] == MAC
    assert word2 >> 16 == 0xF5


@pytest.mark.parametrize("profile", [ESP32S3, ESP32C3])
def test_split_mac_layout_as_esptool_reads_it(profile: ChipProfile) -> None:
    words = mac_registers(profile, MAC)
    low, high = words[profile.mac_reg], words[profile.mac_reg + 4]
    assert struct.pack(">II", high, low)[2:] == MAC


def test_chip_and_mac_names_are_checked() -> None:
    assert chip_profile("ESP32-S3") is ESP32S3
    assert parse_mac("24-0A-C4-12-34-56") == MAC
    with pytest.raises(ValueError, match="simulated chips"):
        chip_profile("esp8266")
    with pytest.raises(ValueError, match="6 bytes"):
        parse_mac("24:0a")


# ---- the session, spoken to directly ------------------------------------------------------------


def _session(
    profile: ChipProfile = ESP32,
    faults: Sequence[Fault] = (),
    unsupported: UnsupportedReply = UnsupportedReply.ECHO,
    timing: TimingModel | None = None,
) -> LoaderSession:
    chip = EspChip(profile, MAC, NorFlash(1024 * 1024))
    return LoaderSession(
        chip, faults=FaultPlan(tuple(faults)), timing=timing or TimingModel(enabled=False), unsupported=unsupported
    )


def _request(op: int, data: bytes = b"", chk: int = 0) -> bytes:
    return slip_encode(REQUEST_HEADER.pack(0, op, len(data), chk) + data)


def _replies(raw: bytes | bytearray) -> list[tuple[int, int, bytes]]:
    frames = SlipDecoder().feed(bytes(raw))
    out = []
    for frame in frames:
        direction, op, size, value = RESPONSE_HEADER.unpack_from(frame)
        assert direction == 1 and size == len(frame) - RESPONSE_HEADER.size
        out.append((op, value, frame[RESPONSE_HEADER.size :]))
    return out


def _block(seq: int, data: bytes) -> tuple[bytes, int]:
    return DATA_HEADER.pack(len(data), seq, 0, 0) + data, checksum(data)


def test_sync_answered_eight_times_rom_value_and_four_status_bytes() -> None:
    session = _session()
    replies = _replies(session.receive(_request(Op.SYNC, SYNC_PAYLOAD)).data)
    assert len(replies) == 8
    assert all(op == Op.SYNC and value == 0x20120707 and body == b"\0\0\0\0" for op, value, body in replies)


def test_esp32_rom_refuses_security_info_like_hardware() -> None:
    session = _session(unsupported=UnsupportedReply.ROM)
    replies = _replies(session.receive(_request(Op.GET_SECURITY_INFO)).data)
    assert len(replies) == 8
    assert {(op, body) for op, _, body in replies} == {(0, b"\x01\x05\x00\x00")}
    echo = _replies(_session().receive(_request(Op.GET_SECURITY_INFO)).data)
    assert echo == [(Op.GET_SECURITY_INFO, 0, b"\x01\x05\x00\x00")]


@pytest.mark.parametrize(("profile", "chip_id"), [(ESP32S3, 9), (ESP32C3, 5)])
def test_security_info_reports_chip_id(profile: ChipProfile, chip_id: int) -> None:
    session = _session(profile)
    [(op, _, body)] = _replies(session.receive(_request(Op.GET_SECURITY_INFO)).data)
    assert op == Op.GET_SECURITY_INFO and len(body) == 20 + 4
    assert struct.unpack_from("<I", body, 12)[0] == chip_id


def test_magic_register_and_clock_divider_follow_baud() -> None:
    session = _session()
    [(_, magic, _)] = _replies(session.receive(_request(Op.READ_REG, struct.pack("<I", 0x40001000))).data)
    assert magic == 0x00F01D83
    [(_, div, _)] = _replies(session.receive(_request(Op.READ_REG, struct.pack("<I", 0x3FF40014))).data)
    assert div == 347  # 40 MHz at 115200 baud
    session.receive(_request(Op.CHANGE_BAUDRATE, struct.pack("<II", 921600, 0)))
    assert session.baud == 921600


def _begin(session: LoaderSession, op: int, size: int, blocks: int, block: int, offset: int) -> bytes:
    words = struct.pack("<IIII", size, blocks, block, offset)
    if session.is_stub or session.chip.profile.rom_begin_words == 5:
        words += b"\0\0\0\0"
    return bytes(session.receive(_request(op, words)).data)


def test_rom_flash_write_checks_checksum_and_sequence() -> None:
    session = _session()
    _begin(session, Op.FLASH_BEGIN, 0x800, 2, 0x400, 0x1000)
    body, chk = _block(0, b"\x11" * 0x400)
    [(_, _, status)] = _replies(session.receive(_request(Op.FLASH_DATA, body, chk ^ 1)).data)
    assert status[:2] == b"\x01\x07"  # checksum error
    [(_, _, status)] = _replies(session.receive(_request(Op.FLASH_DATA, *_block(1, b"\x22" * 0x400))).data)
    assert status[:2] == b"\x01\x05"  # not the block expected
    [(_, _, status)] = _replies(session.receive(_request(Op.FLASH_DATA, body, chk)).data)
    assert status == b"\0\0\0\0"
    assert session.chip.flash.read(0x1000, 0x400) == b"\x11" * 0x400
    md5 = struct.pack("<IIII", 0x1000, 0x400, 0, 0)
    [(_, _, payload)] = _replies(session.receive(_request(Op.SPI_FLASH_MD5, md5)).data)
    assert payload[:32] == hashlib.md5(b"\x11" * 0x400).hexdigest().encode()


def test_stub_upload_greets_and_then_answers_as_stub() -> None:
    session = _session()
    code = b"\x00" * 0x100
    session.receive(_request(Op.MEM_BEGIN, struct.pack("<IIII", len(code), 1, 0x1800, 0x40080000)))
    session.receive(_request(Op.MEM_DATA, *_block(0, code)))
    out = session.receive(_request(Op.MEM_END, struct.pack("<II", 0, 0x40080010)))
    frames = SlipDecoder().feed(bytes(out.data))
    assert frames[-1] == b"OHAI"
    assert session.mode is LoaderMode.STUB
    replies = _replies(session.receive(_request(Op.SYNC, SYNC_PAYLOAD)).data)
    assert replies[0][1] == 0 and replies[0][2] == b"\0\0"  # stub: value 0, two status bytes


def test_stub_compressed_write_then_streamed_read() -> None:
    session = _session()
    session.mode = LoaderMode.STUB
    data = bytes(range(256)) * 40
    packed = zlib.compress(data, 9)
    _begin(session, Op.FLASH_DEFL_BEGIN, len(data), 1, 0x4000, 0x2000)
    [(_, _, status)] = _replies(session.receive(_request(Op.FLASH_DEFL_DATA, *_block(0, packed))).data)
    assert status == b"\0\0"
    [(_, _, status)] = _replies(session.receive(_request(Op.FLASH_DEFL_END, struct.pack("<I", 1))).data)
    assert status == b"\0\0"
    out = session.receive(_request(Op.READ_FLASH, struct.pack("<IIII", 0x2000, len(data), 0x1000, 2)))
    frames = SlipDecoder().feed(bytes(out.data))
    assert len(frames) == 3  # the ACK, then two packets: no more than allowed in flight
    received = b"".join(frames[1:])
    while len(received) < len(data):
        more = SlipDecoder().feed(bytes(session.receive(slip_encode(struct.pack("<I", len(received)))).data))
        received += b"".join(more)
    digest = SlipDecoder().feed(bytes(session.receive(slip_encode(struct.pack("<I", len(data)))).data))
    assert received == data
    assert digest == [hashlib.md5(data).digest()]


def test_erase_commands_are_stub_only() -> None:
    session = _session()
    [(op, _, status)] = _replies(session.receive(_request(Op.ERASE_FLASH)).data)
    assert (op, status[:2]) == (Op.ERASE_FLASH, b"\x01\x05")


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        (FaultKind.DISCONNECT, "close"),
        (FaultKind.STALL, "silent"),
        (FaultKind.ERROR_STATUS, b"\x01\x08"),
        (FaultKind.REFUSE_BLOCK, b"\x01\x07"),
        (FaultKind.CORRUPT_REPLY, "garbled"),
    ],
)
def test_block_faults_strike_at_their_block(kind: FaultKind, expect: object) -> None:
    session = _session(faults=[Fault(kind, 1)])
    _begin(session, Op.FLASH_BEGIN, 0x800, 2, 0x400, 0)
    assert _replies(session.receive(_request(Op.FLASH_DATA, *_block(0, b"\0" * 0x400))).data)[0][2] == b"\0" * 4
    out = session.receive(_request(Op.FLASH_DATA, *_block(1, b"\0" * 0x400)))
    if expect == "close":
        assert out.close and not out.data
    elif expect == "silent":
        assert not out.data and session.stalled
        assert not session.receive(_request(Op.SYNC, SYNC_PAYLOAD)).data
    elif expect == "garbled":
        assert b"\xdb\x5a" in out.data
    else:
        assert _replies(out.data)[0][2][:2] == expect
        # Armed for the rest of this boot: the retried block meets it again.
        again = session.receive(_request(Op.FLASH_DATA, *_block(1, b"\0" * 0x400)))
        assert _replies(again.data)[0][2][:2] == expect
    assert not session.faults.has(kind)  # one-shot: the next boot is clean


def test_timing_model_charges_uart_time_at_the_current_baud() -> None:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    timing = TimingModel(enabled=True, clock=lambda: now[0], sleep=sleep)
    session = _session(timing=timing)
    request = _request(Op.SYNC, SYNC_PAYLOAD)
    out = session.receive(request)
    uart = (len(request) + len(out.data)) * 10 / 115200
    assert timing.by_kind["uart"] == pytest.approx(uart)
    # Costs below the sleep granularity (2 ms) stay owed until the next one.
    assert timing.spent - 0.002 <= sum(slept) <= timing.spent


def test_lower_bound_grows_with_data_and_shrinks_with_compression() -> None:
    small = lower_bound([(0x10000, b"\0" * 4096)])
    big = lower_bound([(0x10000, b"\0" * 65536)])
    assert 0 < small < big
    noisy = bytes(range(256)) * 256
    assert lower_bound([(0, noisy)], compress=False, stub=False, baud=115200) > lower_bound([(0, noisy)])
    with SimulatedEsp("esp32", "24:0a:c4:00:00:01", timing=OFF) as sim:
        assert sim.lower_bound([(0, noisy)]) == lower_bound([(0, noisy)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x3000), st.binary(min_size=1, max_size=512)), max_size=6))
def test_nor_flash_holds_the_and_of_everything_programmed_since_erase(writes: list[tuple[int, bytes]]) -> None:
    flash = NorFlash(4 * SECTOR_SIZE)
    model = bytearray(b"\xff" * (4 * SECTOR_SIZE))
    for address, data in writes:
        flash.program(address, data)
        for i, byte in enumerate(data):
            model[address + i] &= byte
    assert flash.read(0, len(model)) == bytes(model)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=5000),
    offset=st.integers(0, 0x20).map(lambda n: n * SECTOR_SIZE),
    stub=st.booleans(),
    compress=st.booleans(),
)
def test_any_image_written_through_the_session_reads_back(data: bytes, offset: int, stub: bool, compress: bool) -> None:
    session = _session()
    if stub:
        session.mode = LoaderMode.STUB
    block = 0x4000 if stub else 0x400
    if compress:
        payload = zlib.compress(data, 9)
        size = len(data) if stub else -(-len(data) // block) * block
        op_begin, op_data = Op.FLASH_DEFL_BEGIN, Op.FLASH_DEFL_DATA
    else:
        payload = data + b"\xff" * (-len(data) % block)
        size = len(data)
        op_begin, op_data = Op.FLASH_BEGIN, Op.FLASH_DATA
    blocks = -(-len(payload) // block)
    _begin(session, op_begin, size, blocks, block, offset)
    for seq in range(blocks):
        chunk = payload[seq * block : (seq + 1) * block]
        [(_, _, status)] = _replies(session.receive(_request(op_data, *_block(seq, chunk))).data)
        assert status[:2] == b"\0\0"
    assert session.chip.flash.read(offset, len(data)) == data
    md5 = struct.pack("<IIII", offset, len(data), 0, 0)
    [(_, _, answer)] = _replies(session.receive(_request(Op.SPI_FLASH_MD5, md5)).data)
    expected = hashlib.md5(data).digest()
    assert answer[:16] == expected if stub else answer[:32] == expected.hex().encode()


def test_background_work_is_owed_only_when_the_device_must_wait_for_it() -> None:
    """The stub's erase/program after an ACK: counted as overlapped, charged only where the next
    command has to wait for it; on the wall clock too (a fake clock and sleep)."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    timing = TimingModel(enabled=True, clock=lambda: now[0], sleep=sleep)
    timing.spend(1.0, "uart")  # block 1 on the wire
    timing.background(2.0, "erase")  # its erase, after the ACK
    timing.spend(0.5, "uart")  # block 2 arrives meanwhile
    timing.join("flash-wait")  # the stub takes block 2 only when block 1 is written
    assert timing.spent == pytest.approx(3.0)
    assert timing.by_kind["flash-wait"] == pytest.approx(1.5)
    assert timing.overlapped_by_kind["erase"] == pytest.approx(2.0)
    assert now[0] == pytest.approx(3.0)  # the caller really waited until the work was done
    timing.spend(3.0, "uart")  # a long block: the next background work is hidden entirely
    timing.background(1.0, "erase")
    timing.spend(2.0, "uart")
    timing.join("flash-wait")
    assert timing.by_kind["flash-wait"] == pytest.approx(1.5)
