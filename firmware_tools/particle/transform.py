"""Make compressed and combined module files (the inverse of what the parser unwraps)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from firmware_tools.errors import UnsupportedError
from firmware_tools.particle.layout import COMPRESSED_HEADER, CRC
from firmware_tools.particle.model import ModuleFlags
from firmware_tools.particle.parse import parse_module
from firmware_tools.particle.seal import reseal


def compress_module(data: bytes, *, name: str | None = None) -> bytes:
    """``data`` as a COMPRESSED module: prefix, 8-byte header, raw Deflate, the original suffix, CRC.

    The whole original file is compressed unless DROP_MODULE_INFO is set; then only the payload is.
    """
    module = parse_module(data, name=name)
    if module.is_compressed or module.is_combined:
        raise UnsupportedError("module is already compressed or combined", file=name)
    if not module.size_ok:
        raise UnsupportedError("module size does not match its prefix addresses", file=name)
    prefix_end = module.prefix_offset + module.prefix_size
    suffix_size = module.suffix.suffix_size
    if module.flags & ModuleFlags.DROP_MODULE_INFO:
        source = data[prefix_end : len(data) - CRC.size - suffix_size]
    else:
        source = data
    packer = zlib.compressobj(wbits=-15)
    stream = packer.compress(source) + packer.flush()
    prefix = bytearray(data[module.prefix_offset : prefix_end])
    end = module.prefix.start_address + module.prefix_size + COMPRESSED_HEADER.size + len(stream) + suffix_size
    prefix[4:8] = end.to_bytes(4, "little")
    prefix[9] |= ModuleFlags.COMPRESSED
    header = COMPRESSED_HEADER.pack(COMPRESSED_HEADER.size, 0, 0, len(source))
    suffix = data[len(data) - CRC.size - suffix_size : len(data) - CRC.size]
    return reseal(bytes(prefix) + header + stream + suffix + bytes(CRC.size))


def combine_modules(modules: Sequence[bytes]) -> bytes:
    """One file holding ``modules`` in order; all but the last get COMBINED and are re-sealed."""
    if not modules:
        raise UnsupportedError("nothing to combine")
    parts: list[bytes] = []
    for i, data in enumerate(modules):
        module = parse_module(data, name=f"module {i}")
        if not module.size_ok:
            raise UnsupportedError("module size does not match its prefix addresses", file=f"module {i}")
        if module.is_combined:
            raise UnsupportedError("module is already combined", file=f"module {i}")
        if i == len(modules) - 1:
            parts.append(bytes(data))
            continue
        buf = bytearray(data)
        buf[module.prefix_offset + 9] |= ModuleFlags.COMBINED
        parts.append(reseal(buf))
    return b"".join(parts)


__all__ = ["combine_modules", "compress_module"]
