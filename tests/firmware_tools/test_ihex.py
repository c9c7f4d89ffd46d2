"""Intel HEX <-> binary: round trips at any address, gaps read as erased flash, damage is a FormatError."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.errors import FormatError
from firmware_tools.formats import read_firmware
from firmware_tools.ihex import bin_to_hex, hex_to_bin, looks_like_ihex
from firmware_tools.particle import pack_module


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 0xFFFF_0000))
def test_round_trip_at_any_address(data: bytes, address: int) -> None:
    text = bin_to_hex(data, address)
    assert looks_like_ihex(text)
    back, base = hex_to_bin(text)
    assert (back, base) == (data, address)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789ABCDEFabcdef:\n", max_size=300))
def test_hex_shaped_garbage_raises_only_format_error(text: str) -> None:
    raw = (":" + text).encode()
    assert looks_like_ihex(raw)
    with contextlib.suppress(FormatError):
        data, base = hex_to_bin(raw)
        assert data and base >= 0


def test_binary_is_not_taken_for_hex() -> None:
    assert not looks_like_ihex(pack_module(b"app", platform_id=12))
    assert not looks_like_ihex(b":\xff\xfe not ascii")
    assert not looks_like_ihex(b"")


def test_gaps_read_as_erased_flash() -> None:
    text = (
        b":0400000001020304F2\n"  # 4 bytes at 0x0000
        b":02000800AABB91\n"  # 2 bytes at 0x0008
        b":00000001FF\n"
    )
    data, base = hex_to_bin(text)
    assert base == 0
    assert data == bytes([1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0xAA, 0xBB])


def test_bad_checksum_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="not a valid Intel HEX"):
        hex_to_bin(b":0400000001020304F3\n:00000001FF\n", name="bad.hex")


def test_no_data_records_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="no data records"):
        hex_to_bin(b":00000001FF\n")


def test_huge_span_is_refused(tmp_path: Path) -> None:
    text = b":0100000000FF\n:020000040800F2\n:0100000000FF\n:00000001FF\n"
    with pytest.raises(FormatError, match="span"):
        hex_to_bin(text)


def test_address_beyond_32_bits_is_refused() -> None:
    with pytest.raises(FormatError, match="32-bit"):
        bin_to_hex(b"abc", 0xFFFFFFFF)


def test_read_firmware_unwraps_hex_by_content_not_name(tmp_path: Path) -> None:
    module = pack_module(b"app" * 100, platform_id=12)
    disguised = tmp_path / "firmware.bin"
    disguised.write_bytes(bin_to_hex(module, 0xD4000))
    firmware = read_firmware(disguised)
    assert (firmware.container, firmware.base_address, firmware.data) == ("ihex", 0xD4000, module)
    plain = tmp_path / "firmware.hex"
    plain.write_bytes(module)
    assert read_firmware(plain).container == "bin"
