"""The 24 fixed header bytes of an ESP32-family image, read and checked without esptool.

Sniffing uses this alone, so ``fwtool inspect`` on a file of another format never imports esptool.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_tools.errors import FormatError
from firmware_tools.esp import layout
from firmware_tools.esp.chips import FLASH_MODES, FLASH_SIZES, Chip, chip_by_id


@dataclass(frozen=True)
class ImageHeader:
    """What the header and extended header say."""

    chip: Chip
    segment_count: int
    flash_mode: str
    flash_size: str
    flash_freq: str
    entry: int
    min_rev_legacy: int
    min_rev: int  # major * 100 + minor
    max_rev: int
    hash_appended: bool


def read_header(data: bytes, *, name: str | None = None) -> ImageHeader:
    """The header facts, or FormatError naming the first byte that makes this no ESP32-family image."""
    if len(data) < layout.IMAGE_HEADERS_SIZE:
        raise FormatError(
            f"{len(data)} bytes is too short for an ESP image header ({layout.IMAGE_HEADERS_SIZE} bytes)",
            file=name,
        )
    magic, count, mode, size_freq, entry = layout.HEADER.unpack_from(data, 0)
    (_wp, _d1, _d2, _d3, chip_id, min_legacy, min_rev, max_rev, _reserved, hash_flag) = (
        layout.EXTENDED_HEADER.unpack_from(data, layout.HEADER.size)
    )
    if magic != layout.IMAGE_MAGIC:
        raise FormatError(
            f"not an ESP image: first byte is {magic:#04x}, not the image magic {layout.IMAGE_MAGIC:#04x}",
            file=name,
            offset=0,
            hint=_magic_hint(data),
        )
    if not 1 <= count <= layout.MAX_SEGMENTS:
        raise FormatError(f"segment count {count} is outside 1..{layout.MAX_SEGMENTS}", file=name, offset=1)
    if mode not in FLASH_MODES:
        raise FormatError(f"flash mode {mode} is not one of 0..3 (QIO, QOUT, DIO, DOUT)", file=name, offset=2)
    chip = chip_by_id(chip_id)
    if chip is None:
        raise FormatError(
            f"chip id {chip_id} in the extended header is not an ESP32-family chip esptool knows",
            file=name,
            offset=layout.CHIP_ID_OFFSET,
        )
    size_nibble, freq_nibble = size_freq >> 4, size_freq & 0x0F
    if size_nibble not in FLASH_SIZES:
        raise FormatError(f"flash size code {size_nibble:#x} is not a known size", file=name, offset=3)
    if freq_nibble not in chip.flash_freqs:
        raise FormatError(f"flash frequency code {freq_nibble:#x} is not valid for {chip.name}", file=name, offset=3)
    if hash_flag not in (0, 1):
        raise FormatError(
            f"hash_appended byte is {hash_flag:#04x}; it must be 0 or 1",
            file=name,
            offset=layout.HASH_APPENDED_OFFSET,
        )
    return ImageHeader(
        chip=chip,
        segment_count=count,
        flash_mode=FLASH_MODES[mode],
        flash_size=FLASH_SIZES[size_nibble],
        flash_freq=chip.flash_freqs[freq_nibble],
        entry=entry,
        min_rev_legacy=min_legacy,
        min_rev=min_rev,
        max_rev=max_rev,
        hash_appended=hash_flag == 1,
    )


def sniff_score(data: bytes) -> int:
    """0 when the bytes are not an ESP32-family image header; higher the more of it checks out."""
    try:
        read_header(data)
    except FormatError:
        return 0
    score = 60
    # The first segment header must describe data that lies inside the file.
    if len(data) >= layout.IMAGE_HEADERS_SIZE + layout.SEGMENT_HEADER.size:
        _addr, length = layout.SEGMENT_HEADER.unpack_from(data, layout.IMAGE_HEADERS_SIZE)
        if layout.IMAGE_HEADERS_SIZE + layout.SEGMENT_HEADER.size + length <= len(data):
            score += 20
    # Reserved extended-header bytes are zero in every image esptool and ESP-IDF write.
    if data[layout.EXTENDED_RESERVED] == bytes(4):
        score += 10
    return score


def _magic_hint(data: bytes) -> str | None:
    from firmware_tools.esp.encryption import looks_flash_encrypted

    if looks_flash_encrypted(data):
        return "the bytes look like ciphertext, as a flash-encrypted image does; use the plaintext image"
    return None
