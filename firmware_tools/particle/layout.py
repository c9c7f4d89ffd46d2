"""Byte layouts of Particle module metadata, each named once (little-endian but for the CRC)."""

from __future__ import annotations

import struct

# module_info_t: start, end, reserved, flags, module_version, platform_id, function, index,
# dep1 (function, index, version), dep2 (function, index, version).
PREFIX = struct.Struct("<IIBBHHBBBBHBBH")
PREFIX_SIZE = PREFIX.size  # 24

# The fixed tail of every suffix: reserved u16, sha256[32], suffix size u16.
SUFFIX_BASE = struct.Struct("<H32sH")
SUFFIX_BASE_SIZE = SUFFIX_BASE.size  # 36
# Product id and product version, immediately before the base.
PRODUCT_FIELDS = struct.Struct("<HH")
SUFFIX_WITH_PRODUCT_SIZE = SUFFIX_BASE_SIZE + PRODUCT_FIELDS.size  # 40
EXTENDED_PRODUCT_SUFFIX_SIZE = 42  # historic: u32 product id, u16 version
EXTENDED_PRODUCT_FIELDS = struct.Struct("<IH")

CRC = struct.Struct(">I")  # the one big-endian field
CRC_SIZE = CRC.size

# From the end of the file back to each fixed suffix field.
FROM_END_CRC = CRC_SIZE
FROM_END_SUFFIX_SIZE = FROM_END_CRC + 2
FROM_END_SHA = FROM_END_SUFFIX_SIZE + 32  # 38: the SHA covers everything before this
FROM_END_RESERVED = FROM_END_SHA + 2  # 40
FROM_END_PRODUCT_VERSION = FROM_END_RESERVED + 2  # 42
FROM_END_PRODUCT_ID = FROM_END_PRODUCT_VERSION + 2  # 44
MIN_PARSEABLE_SIZE = FROM_END_PRODUCT_ID

# TLV header: type u16, total length u16 (header included).
TLV_HEADER = struct.Struct("<HH")
TLV_PRODUCT_DATA = struct.Struct("<IH")
TLV_DYNAMIC_LOCATION = struct.Struct("<III")
TLV_DEPENDENCY = struct.Struct("<BBHI")
TLV_HASH_HEAD = struct.Struct("<BB")  # hash type, hash length

# Compressed module header after the prefix: header size, method, window bits, uncompressed size.
COMPRESSED_HEADER = struct.Struct("<HBBI")

# Offsets the reference tries first, then the RTL872x XIP header size.
PREFERRED_PREFIX_OFFSETS: tuple[int, ...] = (0, 0x200, 0x184, 0xC0, 0x10C)
KNOWN_PREFIX_OFFSETS: frozenset[int] = frozenset((*PREFERRED_PREFIX_OFFSETS, 0x20))
MAX_PREFIX_SCAN = 8 * 1024
