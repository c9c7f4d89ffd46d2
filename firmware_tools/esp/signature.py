"""What follows an image's checksum and hash: nothing, erased-flash padding, or Secure Boot signatures."""

from __future__ import annotations

import enum
import zlib

from firmware_tools.esp import layout


class SignatureScheme(enum.Enum):
    NONE = "none"
    SECURE_BOOT_V1 = "secure-boot-v1"
    SECURE_BOOT_V2 = "secure-boot-v2"


def detect_signature(data: bytes, image_end: int) -> SignatureScheme:
    """Which signature blocks, if any, follow the image that ends at ``image_end``."""
    tail = data[image_end:]
    if not tail or _erased(tail):
        return SignatureScheme.NONE
    if _has_v2_sector(data, image_end):
        return SignatureScheme.SECURE_BOOT_V2
    if len(tail) >= layout.SBV1_BLOCK.size:
        version, signature = layout.SBV1_BLOCK.unpack_from(tail, 0)
        if version == 0 and not _erased(signature) and any(signature):
            return SignatureScheme.SECURE_BOOT_V1
    return SignatureScheme.NONE


def _erased(chunk: bytes) -> bool:
    return chunk.count(0xFF) == len(chunk)


def _has_v2_sector(data: bytes, image_end: int) -> bool:
    """A valid V2 block (magic, version, CRC-32) at any sector boundary at or after the image end."""
    sector = layout.SBV2_SECTOR_SIZE
    start = -(-image_end // sector) * sector
    for offset in range(start, len(data) - sector + 1, sector):
        if data[offset] == layout.SBV2_BLOCK_MAGIC and data[offset + 1] in layout.SBV2_BLOCK_VERSIONS:
            crc_at = offset + layout.SBV2_BLOCK_CRC_OFFSET
            (stored,) = layout.SBV2_BLOCK_CRC.unpack_from(data, crc_at)
            if zlib.crc32(data[offset:crc_at]) == stored:
                return True
    return False
