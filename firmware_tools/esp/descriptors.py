"""The descriptors ESP-IDF links into an image: esp_app_desc_t (apps) and esp_bootloader_desc_t."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_tools.esp import layout


@dataclass(frozen=True)
class AppDescriptor:
    """esp_app_desc_t. Strings end at their first NUL; bytes that are not UTF-8 show as U+FFFD."""

    magic: int
    secure_version: int
    version: str
    project_name: str
    time: str
    date: str
    idf_ver: str
    elf_sha256: bytes
    min_efuse_blk_rev: int  # major * 100 + minor
    max_efuse_blk_rev: int
    mmu_page_size: int | None  # bytes; None when the image does not say
    file_offset: int  # where the descriptor starts in the file

    def to_json(self) -> dict[str, object]:
        return {
            "magic": self.magic,
            "secure_version": self.secure_version,
            "version": self.version,
            "project_name": self.project_name,
            "time": self.time,
            "date": self.date,
            "idf_ver": self.idf_ver,
            "elf_sha256": self.elf_sha256.hex(),
            "min_efuse_blk_rev": self.min_efuse_blk_rev,
            "max_efuse_blk_rev": self.max_efuse_blk_rev,
            "mmu_page_size": self.mmu_page_size,
            "file_offset": self.file_offset,
        }


@dataclass(frozen=True)
class BootloaderDescriptor:
    """esp_bootloader_desc_t."""

    magic: int
    version: int
    idf_ver: str
    date_time: str
    file_offset: int

    def to_json(self) -> dict[str, object]:
        return {
            "magic": self.magic,
            "version": self.version,
            "idf_ver": self.idf_ver,
            "date_time": self.date_time,
            "file_offset": self.file_offset,
        }


def parse_app_descriptor(segment_data: bytes, file_offset: int) -> AppDescriptor | None:
    """The app descriptor at the start of a DROM segment, or None when its magic word is absent."""
    if len(segment_data) < layout.APP_DESC.size:
        return None
    (
        magic,
        secure_version,
        _reserved1,
        version,
        project_name,
        time,
        date,
        idf_ver,
        elf_sha256,
        min_blk,
        max_blk,
        mmu_log2,
        _reserved3,
        _reserved2,
    ) = layout.APP_DESC.unpack_from(segment_data, 0)
    if magic != layout.APP_DESC_MAGIC:
        return None
    return AppDescriptor(
        magic=magic,
        secure_version=secure_version,
        version=c_string(version),
        project_name=c_string(project_name),
        time=c_string(time),
        date=c_string(date),
        idf_ver=c_string(idf_ver),
        elf_sha256=bytes(elf_sha256),
        min_efuse_blk_rev=min_blk,
        max_efuse_blk_rev=max_blk,
        # Stored as log2; values past 2**31 cannot be a page size, so they read as "not set".
        mmu_page_size=(1 << mmu_log2) if 0 < mmu_log2 < 32 else None,
        file_offset=file_offset,
    )


def parse_bootloader_descriptor(segment_data: bytes, file_offset: int) -> BootloaderDescriptor | None:
    """The bootloader descriptor at the start of a DRAM segment, or None when its magic byte is absent."""
    if len(segment_data) < layout.BOOTLOADER_DESC.size:
        return None
    magic, _reserved1, version, idf_ver, date_time, _reserved2 = layout.BOOTLOADER_DESC.unpack_from(segment_data, 0)
    if magic != layout.BOOTLOADER_DESC_MAGIC:
        return None
    return BootloaderDescriptor(
        magic=magic,
        version=version,
        idf_ver=c_string(idf_ver),
        date_time=c_string(date_time),
        file_offset=file_offset,
    )


def c_string(raw: bytes) -> str:
    """A fixed-size C char array as text: up to the first NUL (or all of it when there is none)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
