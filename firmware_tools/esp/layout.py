"""Byte layouts of an ESP32-family image: every struct format and magic number, each named once."""

from __future__ import annotations

import struct

IMAGE_MAGIC = 0xE9
# The ROM loads at most this many segments.
MAX_SEGMENTS = 16

# magic, segment count, flash mode, flash size (high nibble) | frequency (low nibble), entry point
HEADER = struct.Struct("<BBBBI")
# wp pin, 3 drive-strength bytes, chip id, legacy min rev, min rev full, max rev full,
# 4 reserved bytes, hash_appended
EXTENDED_HEADER = struct.Struct("<BBBBHBHH4sB")
# load address, data length
SEGMENT_HEADER = struct.Struct("<II")
IMAGE_HEADERS_SIZE = HEADER.size + EXTENDED_HEADER.size  # 24: the first segment header starts here
CHIP_ID_OFFSET = HEADER.size + 4
EXTENDED_RESERVED = slice(HEADER.size + 11, HEADER.size + 15)
HASH_APPENDED_OFFSET = IMAGE_HEADERS_SIZE - 1

# The checksum byte is the last byte of a 16-byte block.
CHECKSUM_ALIGN = 16
CHECKSUM_SEED = 0xEF
SHA256_SIZE = 32

# esp_app_desc_t (ESP-IDF esp_app_desc.h), 256 bytes at the start of the first DROM segment.
APP_DESC_MAGIC = 0xABCD5432
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
APP_DESC_VERSION_OFFSET = 16
APP_DESC_VERSION_SIZE = 32

# esp_bootloader_desc_t, 80 bytes at the start of the first DRAM segment of a bootloader.
BOOTLOADER_DESC_MAGIC = 0x50
BOOTLOADER_DESC = struct.Struct("<B3sI32s24s16s")

# Secure Boot V1: a version word (0) and a raw 64-byte ECDSA signature follow the SHA-256.
SBV1_BLOCK = struct.Struct("<I64s")
# Secure Boot V2: a 4 KiB signature sector at a sector boundary after the image, holding up to three
# 1216-byte blocks: magic 0xE7, version (2 RSA, 3 ECDSA), ..., CRC-32 of the first 1196 bytes.
SBV2_SECTOR_SIZE = 4096
SBV2_BLOCK_MAGIC = 0xE7
SBV2_BLOCK_VERSIONS = (0x02, 0x03)
SBV2_BLOCK_CRC_OFFSET = 1196
SBV2_BLOCK_CRC = struct.Struct("<I")

# A flash-mapped segment's file offset equals its load address modulo the MMU page (64 KiB).
MMU_PAGE = 0x10000
