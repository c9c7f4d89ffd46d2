"""Per-unit NVS partitions, built by Espressif's own generator (esp-idf-nvs-partition-gen).

The station writes each board its own NVS partition: one namespace of string and integer entries.
The bytes come from the generator's Python API, as ``nvs_partition_gen.py generate`` makes them from
the same rows, so an ESP-IDF app reads them with ``nvs_get_str`` / ``nvs_get_u32``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

from firmware_tools.errors import UnsupportedError

MAX_KEY_CHARS = 15  # NVS_KEY_NAME_MAX_SIZE - 1
MAX_STRING_BYTES = 4000  # the generator's limit for one string entry
PAGE = 0x1000
MIN_RW_SIZE = 0x3000  # two data pages and the reserved page


@dataclass(frozen=True)
class NvsEntry:
    """One row as the generator's CSV states it: key, encoding ("string", "u32", "i64"), value text."""

    key: str
    encoding: str
    value: str

    def to_json(self) -> list[str]:
        return [self.key, self.encoding, self.value]


def entry(key: str, value: str | int) -> NvsEntry:
    """A string or integer entry, checked against NVS's limits."""
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise UnsupportedError(f"NVS key {key!r} must be 1 to {MAX_KEY_CHARS} printable ASCII characters")
    if isinstance(value, bool):
        raise UnsupportedError(f"NVS key {key!r}: true/false is not an NVS type; use 0 or 1")
    if isinstance(value, int):
        if 0 <= value <= 0xFFFFFFFF:
            return NvsEntry(key, "u32", str(value))
        if -(1 << 63) <= value < 1 << 63:
            return NvsEntry(key, "i64", str(value))
        raise UnsupportedError(f"NVS key {key!r}: {value} does not fit 64 bits")
    if len(value.encode("utf-8")) > MAX_STRING_BYTES or "\0" in value:
        raise UnsupportedError(f"NVS key {key!r}: a string of at most {MAX_STRING_BYTES} bytes without NUL")
    return NvsEntry(key, "string", value)


def entries(values: Mapping[str, str | int]) -> tuple[NvsEntry, ...]:
    return tuple(entry(k, v) for k, v in values.items())


def build_nvs_partition(namespace: str, rows: tuple[NvsEntry, ...], size: int) -> bytes:
    """The NVS partition image of ``size`` bytes holding ``rows`` in ``namespace`` (format version 2)."""
    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    if size % PAGE or size < MIN_RW_SIZE:
        raise UnsupportedError(f"an NVS partition of {size:#x} bytes: it must be a multiple of 4 KiB, at least 0x3000")
    entry(namespace, "")  # the same limits as a key
    out = io.BytesIO()
    # What ``generate`` does with its size argument: one page is kept back as the reserved page.
    # (check_size only logs and exits on sizes refused above.)
    with contextlib.redirect_stdout(io.StringIO()):
        data_size, read_only = gen.check_size(hex(size))
    try:
        nvs = gen.nvs_open(out, data_size, gen.Page.VERSION2, read_only=read_only)
        gen.write_entry(nvs, namespace, "namespace", "", "")
        for row in rows:
            gen.write_entry(nvs, row.key, "data", row.encoding, row.value)
        gen.nvs_close(nvs)
    except (gen.InputError, gen.PageFullError, gen.InsufficientSizeError) as exc:
        raise UnsupportedError(f"the NVS generator refused the unit data: {exc}") from None
    data = out.getvalue()
    if len(data) != size:
        raise UnsupportedError(f"the NVS generator made {len(data)} bytes for a {size:#x}-byte partition")
    return data
