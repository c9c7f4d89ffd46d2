"""The two integrity fields of a module: SHA-256 of everything before it, then the big-endian CRC-32."""

from __future__ import annotations

import hashlib
import zlib

from firmware_tools.particle.layout import CRC, FROM_END_CRC, FROM_END_SHA, FROM_END_SUFFIX_SIZE


def file_sha256(data: bytes) -> bytes:
    """The SHA-256 a module should store: over file[0, len-38)."""
    return hashlib.sha256(memoryview(data)[: max(len(data) - FROM_END_SHA, 0)]).digest()


def file_crc32(data: bytes) -> int:
    """The CRC-32 a module should store: over file[0, len-4)."""
    return zlib.crc32(memoryview(data)[: max(len(data) - FROM_END_CRC, 0)]) & 0xFFFFFFFF


def reseal(module: bytes | bytearray) -> bytes:
    """``module`` with its SHA-256 recomputed first, then its CRC-32 (which covers the SHA)."""
    buf = bytearray(module)
    n = len(buf)
    buf[n - FROM_END_SHA : n - FROM_END_SUFFIX_SIZE] = file_sha256(bytes(buf))
    buf[n - FROM_END_CRC :] = CRC.pack(file_crc32(bytes(buf)))
    return bytes(buf)
