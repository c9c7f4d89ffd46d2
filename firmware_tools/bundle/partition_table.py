"""ESP-IDF binary partition tables, so an ESP release can carry the table a fresh board needs at 0x8000.

Layout (ESP-IDF "Partition Tables" guide, gen_esp32part.py): 32-byte entries starting AA 50, an
optional MD5 entry (EB EB, 14 x FF, MD5 of the entries before it), then 0xFF to the end; at most 0xC00 bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from firmware_tools.checks import Check
from firmware_tools.errors import FormatError

ENTRY = struct.Struct("<2sBBII16sI")  # magic, type, subtype, offset, size, label, flags
ENTRY_MAGIC = b"\xaa\x50"
MD5_MARKER = b"\xeb\xeb" + b"\xff" * 14
MAX_TABLE_BYTES = 0xC00
DEFAULT_OFFSET = 0x8000
_TYPES = {0x00: "app", 0x01: "data", 0x02: "bootloader", 0x03: "partition_table"}


@dataclass(frozen=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "type": _TYPES.get(self.type, self.type),
            "subtype": self.subtype,
            "offset": self.offset,
            "size": self.size,
            "flags": self.flags,
        }


@dataclass(frozen=True)
class PartitionTable:
    partitions: tuple[Partition, ...]
    md5_stored: bytes | None
    md5_computed: bytes | None

    @property
    def md5_ok(self) -> bool | None:
        return None if self.md5_stored is None else self.md5_stored == self.md5_computed

    def to_json(self) -> dict[str, object]:
        return {
            "format": "esp-partition-table",
            "partitions": [p.to_json() for p in self.partitions],
            "md5_stored": self.md5_stored.hex() if self.md5_stored is not None else None,
            "md5_ok": self.md5_ok,
        }

    def checks(self, *, table_offset: int = DEFAULT_OFFSET, flash_size: int | None = None) -> tuple[Check, ...]:
        """ESP-IDF's rules for a table (range, alignment, overlaps, names, MD5): firmware_tools.esp.flash_layout."""
        from firmware_tools.esp.flash_layout import table_checks

        return table_checks(self, table_offset=table_offset, flash_size=flash_size)


def looks_like_partition_table(data: bytes) -> bool:
    return data[:2] == ENTRY_MAGIC


def parse_partition_table(data: bytes, *, name: str | None = None) -> PartitionTable:
    """The table in ``data``; FormatError when it is not one."""
    if len(data) > MAX_TABLE_BYTES:
        raise FormatError(f"{len(data)} bytes is more than a partition table's {MAX_TABLE_BYTES:#x}", file=name)
    if not looks_like_partition_table(data):
        raise FormatError("not an ESP partition table (no AA 50 entry at the start)", file=name)
    partitions: list[Partition] = []
    md5_stored: bytes | None = None
    md5_computed: bytes | None = None
    pos = 0
    while pos + ENTRY.size <= len(data):
        raw = data[pos : pos + ENTRY.size]
        if raw[:16] == MD5_MARKER:
            md5_stored, md5_computed = raw[16:], hashlib.md5(data[:pos], usedforsecurity=False).digest()
            pos += ENTRY.size
            break
        if raw == b"\xff" * ENTRY.size:
            break
        magic, ptype, subtype, offset, size, label, flags = ENTRY.unpack(raw)
        if magic != ENTRY_MAGIC:
            raise FormatError(f"entry {len(partitions)} does not start with AA 50", file=name, offset=pos)
        text = label.split(b"\0", 1)[0].decode("ascii", errors="replace")
        partitions.append(Partition(text, ptype, subtype, offset, size, flags))
        pos += ENTRY.size
    if data[pos:].count(0xFF) != len(data) - pos:
        raise FormatError("bytes after the table's end are not erased (0xFF)", file=name, offset=pos)
    if not partitions:
        raise FormatError("the partition table holds no partitions", file=name)
    return PartitionTable(tuple(partitions), md5_stored, md5_computed)


def build_partition_table(partitions: list[Partition], *, with_md5: bool = True) -> bytes:
    """A binary table as ESP-IDF writes it, for tests and the demo line."""
    body = b"".join(
        ENTRY.pack(ENTRY_MAGIC, p.type, p.subtype, p.offset, p.size, p.label.encode("ascii")[:16], p.flags)
        for p in partitions
    )
    if with_md5:
        body += MD5_MARKER + hashlib.md5(body, usedforsecurity=False).digest()
    return body + b"\xff" * (MAX_TABLE_BYTES - len(body))
