"""Reading an ESP32-family app or bootloader image into one typed value, through esptool's loader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from firmware_tools.errors import FormatError
from firmware_tools.esp import layout
from firmware_tools.esp.descriptors import (
    AppDescriptor,
    BootloaderDescriptor,
    parse_app_descriptor,
    parse_bootloader_descriptor,
)
from firmware_tools.esp.esptool_bridge import load_image
from firmware_tools.esp.header import read_header
from firmware_tools.esp.signature import SignatureScheme, detect_signature


@dataclass(frozen=True)
class Segment:
    """One segment. ``file_offset`` is where its 8-byte header starts, as esptool prints it."""

    load_address: int
    length: int
    file_offset: int
    memory_types: tuple[str, ...]  # esptool's names for the regions the load address falls in
    flash_mapped: bool  # mapped from flash by the MMU (DROM/IROM) rather than copied to RAM

    @property
    def data_offset(self) -> int:
        return self.file_offset + layout.SEGMENT_HEADER.size

    @property
    def memory_type(self) -> str:
        return ", ".join(self.memory_types) or "unknown"

    def to_json(self) -> dict[str, object]:
        return {
            "load_address": self.load_address,
            "length": self.length,
            "file_offset": self.file_offset,
            "data_offset": self.data_offset,
            "memory_type": self.memory_type,
            "memory_types": list(self.memory_types),
            "flash_mapped": self.flash_mapped,
        }


@dataclass(frozen=True)
class EspImage:
    """Everything an ESP32-family image states, and whether its checksum and hash hold."""

    chip: str  # as esptool prints it, e.g. "ESP32-S3"
    chip_key: str  # esptool's --chip spelling, e.g. "esp32s3"
    chip_id: int
    entry: int
    flash_mode: str  # "QIO", "QOUT", "DIO", "DOUT"
    flash_size: str  # "4MB"
    flash_freq: str  # "40m"
    min_rev: int  # chip revision, major * 100 + minor
    max_rev: int  # 0 (old images) or 65535 mean "no upper bound"
    min_rev_legacy: int
    segments: tuple[Segment, ...]
    checksum_offset: int
    checksum_stored: int
    checksum_computed: int
    hash_appended: bool
    sha256_stored: bytes | None
    sha256_computed: bytes | None
    app: AppDescriptor | None
    bootloader: BootloaderDescriptor | None
    signature: SignatureScheme
    image_end: int  # one past the checksum, or past the SHA-256 when appended
    size: int  # the whole file, trailing bytes included

    @property
    def checksum_ok(self) -> bool:
        return self.checksum_stored == self.checksum_computed

    @property
    def sha256_ok(self) -> bool | None:
        """None when no hash is appended."""
        if not self.hash_appended:
            return None
        return self.sha256_stored == self.sha256_computed

    @property
    def signed(self) -> bool:
        return self.signature is not SignatureScheme.NONE

    @property
    def trailing_size(self) -> int:
        return self.size - self.image_end

    @property
    def max_rev_bounded(self) -> bool:
        return self.max_rev not in (0, 0xFFFF)

    def to_json(self) -> dict[str, object]:
        return {
            "format": "esp-image",
            "chip": self.chip,
            "chip_id": self.chip_id,
            "entry": self.entry,
            "flash_mode": self.flash_mode,
            "flash_size": self.flash_size,
            "flash_freq": self.flash_freq,
            "min_rev": self.min_rev,
            "max_rev": self.max_rev,
            "min_rev_text": rev_text(self.min_rev),
            "max_rev_text": rev_text(self.max_rev) if self.max_rev_bounded else None,
            "segments": [s.to_json() for s in self.segments],
            "checksum_offset": self.checksum_offset,
            "checksum_stored": self.checksum_stored,
            "checksum_computed": self.checksum_computed,
            "checksum_ok": self.checksum_ok,
            "hash_appended": self.hash_appended,
            "sha256_stored": self.sha256_stored.hex() if self.sha256_stored is not None else None,
            "sha256_computed": self.sha256_computed.hex() if self.sha256_computed is not None else None,
            "sha256_ok": self.sha256_ok,
            "signed": self.signed,
            "signature": self.signature.value,
            "size": self.size,
            "image_end": self.image_end,
            "trailing_size": self.trailing_size,
            "app": self.app.to_json() if self.app is not None else None,
            "bootloader": self.bootloader.to_json() if self.bootloader is not None else None,
        }


def rev_text(rev_full: int) -> str:
    """A chip revision as esptool prints it: 399 -> "v3.99"."""
    return f"v{rev_full // 100}.{rev_full % 100}"


def parse_esp_image(data: bytes, *, name: str | None = None) -> EspImage:
    """Parse an ESP32-family image; FormatError (and nothing else) when the bytes are not one."""
    data = bytes(data)
    header = read_header(data, name=name)
    _check_not_cut_short(data, header.segment_count, name)
    loaded = load_image(header.chip.key, data, name=name)
    segments = tuple(_segment(loaded, seg) for seg in loaded.segments)
    end_of_segments = segments[-1].data_offset + segments[-1].length if segments else layout.IMAGE_HEADERS_SIZE
    checksum_offset = end_of_segments | (layout.CHECKSUM_ALIGN - 1)
    image_end = checksum_offset + 1
    sha_stored: bytes | None = None
    sha_computed: bytes | None = None
    if header.hash_appended:
        sha_stored = bytes(loaded.stored_digest)
        if len(sha_stored) != layout.SHA256_SIZE:
            raise FormatError(
                f"the image is truncated: the header announces a SHA-256 after the checksum, "
                f"but only {len(sha_stored)} of its {layout.SHA256_SIZE} bytes are there",
                file=name,
                offset=image_end,
            )
        sha_computed = hashlib.sha256(data[:image_end]).digest()
        image_end += layout.SHA256_SIZE
    app = _find_app_descriptor(loaded, segments)
    return EspImage(
        chip=header.chip.name,
        chip_key=header.chip.key,
        chip_id=header.chip.chip_id,
        entry=header.entry,
        flash_mode=header.flash_mode,
        flash_size=header.flash_size,
        flash_freq=header.flash_freq,
        min_rev=header.min_rev,
        max_rev=header.max_rev,
        min_rev_legacy=header.min_rev_legacy,
        segments=segments,
        checksum_offset=checksum_offset,
        checksum_stored=int(loaded.checksum),
        checksum_computed=int(loaded.calculate_checksum()),
        hash_appended=header.hash_appended,
        sha256_stored=sha_stored,
        sha256_computed=sha_computed,
        app=app,
        bootloader=None if app is not None else _find_bootloader_descriptor(loaded, segments),
        signature=detect_signature(data, image_end),
        image_end=image_end,
        size=len(data),
    )


def _check_not_cut_short(data: bytes, segment_count: int, name: str | None) -> None:
    """Walk the segment headers so a truncated file is called that, rather than esptool's struct error."""
    pos = layout.IMAGE_HEADERS_SIZE
    size = len(data)
    for i in range(segment_count):
        if pos + layout.SEGMENT_HEADER.size > size:
            raise FormatError(
                f"the image is cut short: the header announces {segment_count} segments, but the file "
                f"({size} bytes) ends before segment {i}'s header",
                file=name,
                offset=pos,
            )
        _addr, length = layout.SEGMENT_HEADER.unpack_from(data, pos)
        if pos + layout.SEGMENT_HEADER.size + length > size:
            raise FormatError(
                f"the image is cut short: segment {i} holds {length} bytes, but the file ends "
                f"{size - pos - layout.SEGMENT_HEADER.size} bytes after its header",
                file=name,
                offset=pos,
            )
        pos += layout.SEGMENT_HEADER.size + length
    checksum_offset = pos | (layout.CHECKSUM_ALIGN - 1)
    if checksum_offset >= size:
        raise FormatError(
            f"the image is cut short: the file ends before the checksum byte at {checksum_offset:#x}",
            file=name,
            offset=checksum_offset,
        )


def _segment(loaded: Any, seg: Any) -> Segment:
    return Segment(
        load_address=int(seg.addr),
        length=len(seg.data),
        file_offset=int(seg.file_offs),
        memory_types=tuple(str(t) for t in seg.get_memory_type(loaded)),
        flash_mapped=bool(loaded.is_flash_addr(seg.addr)),
    )


def _find_app_descriptor(loaded: Any, segments: tuple[Segment, ...]) -> AppDescriptor | None:
    # esptool's rule: the data of the first DROM segment (the linker puts the descriptor there).
    for raw, seg in zip(loaded.segments, segments, strict=True):
        if "DROM" in seg.memory_types:
            return parse_app_descriptor(bytes(raw.data), seg.data_offset)
    return None


def _find_bootloader_descriptor(loaded: Any, segments: tuple[Segment, ...]) -> BootloaderDescriptor | None:
    # ESP-IDF puts it at the top of the first DRAM segment big enough to hold it.
    for raw, seg in zip(loaded.segments, segments, strict=True):
        if "DRAM" in seg.memory_types and seg.length >= layout.BOOTLOADER_DESC.size:
            return parse_bootloader_descriptor(bytes(raw.data), seg.data_offset)
    return None
