"""DfuSe memory-map strings (an alt setting's iInterface string): parse, and answer which pages a range covers.

Format (ST UM0424, as dfu-util and particle-usb read it):
``@<name>/<0xSTART>/<count>*<size><unit><type>[,<count>*<size><unit><type>...][/<0xSTART>/...]``.
Unit ``B``/space = bytes, ``K`` = KiB, ``M`` = MiB; type letter ``a``..``g`` is a bit mask
(letter & 7): 1 readable, 2 erasable, 4 writable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_UNITS = {"B": 1, " ": 1, "K": 1024, "M": 1024 * 1024}
_SEGMENT = re.compile(r"^\s*(\d+)\s*\*\s*(\d+)\s*([BKM ]?)([a-g])\s*$")
_READABLE = 1
_ERASABLE = 2
_WRITABLE = 4
# A memory string is at most one USB string descriptor (126 UTF-16 units); be generous but bounded.
_MAX_TEXT = 1024
_MAX_ADDRESS = 0xFFFFFFFF


class MemoryMapError(ValueError):
    """A memory-map string that does not follow the DfuSe format."""


@dataclass(frozen=True)
class Segment:
    """``count`` pages of ``page_size`` bytes from ``start``; ``end`` is exclusive."""

    start: int
    page_size: int
    count: int
    readable: bool
    erasable: bool
    writable: bool

    @property
    def end(self) -> int:
        return self.start + self.page_size * self.count

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end

    def page_start(self, address: int) -> int:
        return self.start + (address - self.start) // self.page_size * self.page_size


@dataclass(frozen=True)
class MemoryMap:
    """One alt setting's memory: its name and its segments in address order."""

    name: str
    segments: tuple[Segment, ...]

    def segment_at(self, address: int) -> Segment | None:
        for segment in self.segments:
            if segment.contains(address):
                return segment
        return None

    def covers(self, start: int, length: int, *, writable: bool = False, readable: bool = False) -> bool:
        """True when every byte of ``[start, start+length)`` is mapped (and has the asked properties)."""
        if length <= 0:
            return self.segment_at(start) is not None
        address = start
        end = start + length
        while address < end:
            segment = self.segment_at(address)
            if segment is None:
                return False
            if writable and not segment.writable:
                return False
            if readable and not segment.readable:
                return False
            address = segment.end
        return True

    def pages(self, start: int, length: int) -> Iterator[tuple[int, int]]:
        """``(page address, page size)`` of every page that ``[start, start+length)`` touches, in order."""
        if length <= 0:
            return
        address = start
        end = start + length
        while address < end:
            segment = self.segment_at(address)
            if segment is None:
                raise MemoryMapError(f"address {address:#010x} is outside {self.name!r}")
            page = segment.page_start(address)
            yield page, segment.page_size
            address = page + segment.page_size

    @property
    def protected(self) -> bool:
        """Every segment erasable only: how Particle bootloaders advertise device protection."""
        return bool(self.segments) and all(s.erasable and not s.readable and not s.writable for s in self.segments)


def parse_memory_map(text: str) -> MemoryMap:
    """Parse one memory-map string; ``MemoryMapError`` says what is wrong with it."""
    if len(text) > _MAX_TEXT:
        raise MemoryMapError(f"memory map string is {len(text)} characters long")
    if not text.startswith("@"):
        raise MemoryMapError(f"memory map {text!r} does not start with '@'")
    parts = text[1:].split("/")
    name = parts[0].strip()
    rest = parts[1:]
    if not rest or len(rest) % 2:
        raise MemoryMapError(f"memory map {text!r}: expected /ADDRESS/SEGMENTS pairs after the name")
    segments: list[Segment] = []
    for i in range(0, len(rest), 2):
        address_text, layout = rest[i].strip(), rest[i + 1]
        try:
            address = int(address_text, 16 if address_text.lower().startswith("0x") else 10)
        except ValueError:
            raise MemoryMapError(f"memory map {text!r}: bad address {address_text!r}") from None
        for item in layout.split(","):
            match = _SEGMENT.match(item)
            if match is None:
                raise MemoryMapError(f"memory map {text!r}: bad segment {item!r}")
            count, size, unit, kind = match.groups()
            page_size = int(size) * _UNITS[unit or "B"]
            count_n = int(count)
            if page_size == 0 or count_n == 0:
                raise MemoryMapError(f"memory map {text!r}: empty segment {item!r}")
            bits = ord(kind) & 7
            segment = Segment(
                start=address,
                page_size=page_size,
                count=count_n,
                readable=bool(bits & _READABLE),
                erasable=bool(bits & _ERASABLE),
                writable=bool(bits & _WRITABLE),
            )
            if segment.end - 1 > _MAX_ADDRESS:
                raise MemoryMapError(f"memory map {text!r}: segment {item!r} runs past 4 GiB")
            if segments and segments[-1].end > segment.start:
                raise MemoryMapError(f"memory map {text!r}: segment {item!r} overlaps the one before")
            segments.append(segment)
            address = segment.end
    return MemoryMap(name=name, segments=tuple(segments))


def format_memory_map(memory: MemoryMap, *, name_padding: str = "   ") -> str:
    """The memory-map string for ``memory``; contiguous segments share one ``/0xADDRESS/`` group."""
    groups: list[str] = []
    current: list[str] = []
    next_address: int | None = None
    for segment in memory.segments:
        if segment.start != next_address:
            if current:
                groups.append(",".join(current))
            groups.append(f"0x{segment.start:08X}")
            current = []
        bits = (
            (_READABLE if segment.readable else 0)
            | (_ERASABLE if segment.erasable else 0)
            | (_WRITABLE if segment.writable else 0)
        )
        kind = chr(ord("`") + bits)
        if segment.page_size % 1024 == 0:
            current.append(f"{segment.count:02d}*{segment.page_size // 1024:03d}K{kind}")
        else:
            current.append(f"{segment.count:02d}*{segment.page_size:03d}B{kind}")
        next_address = segment.end
    if current:
        groups.append(",".join(current))
    return f"@{memory.name}{name_padding}/" + "/".join(groups)
