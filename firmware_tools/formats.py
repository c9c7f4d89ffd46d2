"""Content-based format detection, and the one interface every firmware format implements.

Commands never trust a file name: ``read_firmware`` unwraps Intel HEX by content, then
``detect`` asks each known format how sure it is that the bytes are one of its own.
"""

from __future__ import annotations

import importlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from firmware_tools.checks import Expectations, ValidationReport
from firmware_tools.errors import FormatError

# The largest firmware file any command reads; bigger is refused before reading (a 16 MiB SPI
# flash image is the largest thing a bench flashes).
MAX_FIRMWARE_BYTES = 32 * 1024 * 1024

# Each entry is a module that defines ``FORMAT``, imported only when detection needs it, so that
# ``fwtool inspect`` on one Particle file never pays for esptool's import.
FORMAT_MODULES: tuple[str, ...] = (
    "firmware_tools.esp.fwformat",
    "firmware_tools.particle.fwformat",
    "firmware_tools.bundle.fwformat",
    "firmware_tools.bundle.partition_fwformat",
)


class FirmwareFormat(Protocol):
    """What ``fwtool`` needs from a format."""

    name: str

    def sniff(self, data: bytes) -> int:
        """How sure this format is that ``data`` is its own: 0 = not mine, higher = surer."""
        ...

    def inspect(self, data: bytes) -> dict[str, object]:
        """Every fact the file states, JSON-ready. Raises FormatError when unparseable."""
        ...

    def summary(self, data: bytes) -> list[str]:
        """The same facts as lines a person reads."""
        ...

    def validate(self, data: bytes, expect: Expectations) -> ValidationReport:
        """Named checks, each with a verdict and a reason."""
        ...


@dataclass(frozen=True)
class FirmwareFile:
    """A firmware file's bytes as flash will hold them, and how the file stored them."""

    path: str
    data: bytes
    container: str  # "bin" or "ihex"
    base_address: int | None  # the lowest address an Intel HEX file gives; None for .bin


def read_firmware(path: str | Path) -> FirmwareFile:
    """Read a .bin or Intel HEX file (told apart by content), bounded in size."""
    from firmware_tools.fileio import read_regular_file

    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    if stat.S_ISDIR(st.st_mode):
        raise FormatError("is a folder, not a firmware file", file=str(p))
    too_large = f"larger than the {MAX_FIRMWARE_BYTES} bytes a firmware image may be"
    if st.st_size > MAX_FIRMWARE_BYTES:
        raise FormatError(f"file is {st.st_size} bytes, {too_large}", file=str(p))
    # A FIFO or a device is refused before any blocking read; the read stays bounded.
    raw = read_regular_file(p, MAX_FIRMWARE_BYTES, what="firmware file")
    if len(raw) > MAX_FIRMWARE_BYTES:
        raise FormatError(f"file is {too_large}", file=str(p))
    if not raw:
        raise FormatError("file is empty", file=str(p), hint="was the build or the copy interrupted?")
    from firmware_tools import ihex

    if ihex.looks_like_ihex(raw):
        data, base = ihex.hex_to_bin(raw, name=str(p))
        return FirmwareFile(str(p), data, "ihex", base)
    return FirmwareFile(str(p), raw, "bin", None)


def all_formats() -> list[FirmwareFormat]:
    formats: list[FirmwareFormat] = []
    for module_name in FORMAT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A format whose module is not built yet is simply not offered.
            if exc.name == module_name:
                continue
            raise
        formats.append(module.FORMAT)
    return formats


def detect(data: bytes, *, name: str | None = None) -> FirmwareFormat:
    """The format ``data`` is in, judged by content alone."""
    best: FirmwareFormat | None = None
    best_score = 0
    formats = all_formats()
    for fmt in formats:
        score = fmt.sniff(data)
        if score > best_score:
            best, best_score = fmt, score
    if best is None:
        # A format may recognise what is nearly its own (cut short, encrypted) and say so.
        hints = (getattr(fmt, "near_miss", _no_hint)(data) for fmt in formats)
        raise FormatError(
            "not a firmware file benchflash knows (Particle module, ESP image or partition table, Intel HEX, bundle)",
            file=name,
            hint=next((h for h in hints if h), None),
        )
    return best


def _no_hint(data: bytes) -> str | None:
    return None
