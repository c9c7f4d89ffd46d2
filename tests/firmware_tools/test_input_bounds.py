"""Inputs that cannot hang or exhaust a bench: FIFOs refused unopened, Intel HEX bounded while it is read.

The reader is checked against intelhex (the reference) on generated files; the timings are bench/ihex_bounds.py's.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from intelhex import IntelHex

from firmware_tools.errors import FormatError
from firmware_tools.ihex import MAX_SPAN, hex_to_bin

FWTOOL = Path(sys.executable).with_name("fwtool")


def _record(address: int, data: bytes, kind: int = 0) -> str:
    body = bytes([len(data), (address >> 8) & 0xFF, address & 0xFF, kind]) + data
    return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper() + "\n"


@pytest.mark.parametrize(
    "args",
    [
        ["inspect"],
        ["validate"],
        ["convert", "{out}"],
        ["set-product", "--product-id", "1", "--product-version", "1", "-o", "{out}"],
    ],
)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path, args: list[str]) -> None:
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    out = tmp_path / "out.hex"
    argv = [str(FWTOOL), args[0], str(fifo), *(a.format(out=out) for a in args[1:])]
    # No writer ever opens the FIFO: a blocking open or read would hang until the timeout kills it.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not a regular file (a FIFO)" in done.stderr
    assert not out.exists()


def test_station_flash_refuses_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    station = FWTOOL.with_name("station")
    done = subprocess.run([str(station), "flash", str(fifo)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a regular file (a FIFO)" in done.stderr


def test_records_32_mib_apart_are_refused_while_reading() -> None:
    text = _record(0, b"\x00\x00", 4) + _record(0, b"\x01") + _record(0, b"\x02\x00", 4) + _record(0, b"\x02")
    raw = (text + ":00000001FF\n").encode()
    assert len(raw) == 72
    with pytest.raises(FormatError, match="span more than") as info:
        hex_to_bin(raw)
    assert "line 4" in str(info.value)  # refused at the record that broke the bound, before building


def test_a_span_of_exactly_the_bound_is_read() -> None:
    top = MAX_SPAN - 1
    raw = (
        _record(0, b"\xaa") + _record(0, bytes([top >> 24, (top >> 16) & 0xFF]), 4) + _record(top & 0xFFFF, b"\xbb")
    ).encode()
    data, base = hex_to_bin(raw)
    assert (len(data), base, data[0], data[-1]) == (MAX_SPAN, 0, 0xAA, 0xBB)


def test_overlapping_records_and_bad_checksums_are_refused() -> None:
    with pytest.raises(FormatError, match="overlap"):
        hex_to_bin((_record(0x10, b"abcd") + _record(0x12, b"xy")).encode())
    bad = _record(0, b"ab")
    with pytest.raises(FormatError, match="checksum"):
        hex_to_bin((bad[:-3] + "00\n").encode())


_chunks = st.lists(
    st.tuples(st.integers(0, 0x3FFFF), st.binary(min_size=1, max_size=40), st.sampled_from(["linear", "segment"])),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(_chunks)
def test_the_reader_agrees_with_intelhex(chunks: list[tuple[int, bytes, str]]) -> None:
    """Records in any order, through extended linear or segment addresses, as intelhex reads them."""
    text = ""
    for address, data, how in chunks:
        if how == "linear":
            text += _record(0, (address >> 16).to_bytes(2, "big"), 4)
            text += _record(address & 0xFFFF, data[: 0x10000 - (address & 0xFFFF)])
        else:
            segment = (address >> 4) & 0xF000
            text += _record(0, segment.to_bytes(2, "big"), 2)
            text += _record(address - segment * 16, data[: 0x10000 - (address - segment * 16)])
    raw = (text + ":00000001FF\n").encode()
    reference = IntelHex()
    try:
        reference.loadhex(io.StringIO(raw.decode()))
    except Exception as exc:  # intelhex refuses overlaps; so must we
        with pytest.raises(FormatError):
            hex_to_bin(raw)
        assert "overlap" in type(exc).__name__.lower() or "overlap" in str(exc).lower()
        return
    reference.padding = 0xFF
    start, end = reference.minaddr(), reference.maxaddr()
    assert hex_to_bin(raw) == (bytes(reference.tobinarray(start=start, end=end)), start)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="0123456789ABCDEF", min_size=10, max_size=50), min_size=1, max_size=6))
def test_damaged_records_fail_as_intelhex_fails_them(lines: list[str]) -> None:
    raw = "".join(f":{line}\n" for line in lines).encode()
    reference = IntelHex()
    try:
        reference.loadhex(io.StringIO(raw.decode()))
        ok = bool(reference.addresses())
    except Exception:
        ok = False
    if ok:
        reference.padding = 0xFF
        start, end = reference.minaddr(), reference.maxaddr()
        with contextlib.suppress(FormatError):  # only the span bound may refuse what intelhex reads
            assert hex_to_bin(raw) == (bytes(reference.tobinarray(start=start, end=end)), start)
            return
        assert end - start + 1 > MAX_SPAN
    else:
        with pytest.raises(FormatError):
            hex_to_bin(raw)
