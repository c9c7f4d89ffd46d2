"""A small encoder of valid ESP-IDF-shaped app images, for tests, benchmarks and the demo line.

The image is laid out and sealed by esptool's own writer (``ESP32FirmwareImage.save``): an
esp_app_desc_t at the start of the first DROM segment, seeded pseudo-random code in an IROM segment,
and small DRAM/IRAM segments; checksum and SHA-256 appended.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.esp import layout
from firmware_tools.esp.chips import FLASH_MODES, FLASH_SIZES, chip_by_name, known_chip_names
from firmware_tools.esp.esptool_bridge import image_section, new_image, quiet
from firmware_tools.esp.reseal import encode_version

# Fixed build stamps keep the encoder deterministic: same arguments, same bytes.
BUILD_TIME = b"12:00:00"
BUILD_DATE = b"Jan  1 2026"
IDF_VERSION = b"benchflash-synthetic"
_RODATA_SIZE = 256
_DRAM_SIZE = 64
_IRAM_SIZE = 128
# DRAM and IRAM share one address range on the RISC-V chips; keep the two segments apart.
_DRAM_GAP = 0x8000
# 64 KiB MMU page, as log2, the value ESP-IDF writes into esp_app_desc_t.mmu_page_size.
_MMU_PAGE_LOG2 = 16


def build_app_image(
    *,
    chip: str = "esp32",
    version: str = "1.0.0",
    project_name: str = "app",
    payload_size: int = 4096,
    seed: int = 0,
    secure_version: int = 0,
    flash_mode: str = "DIO",
    flash_size: str = "4MB",
) -> bytes:
    """A valid app image for ``chip`` that esptool's LoadFirmwareImage accepts."""
    target = chip_by_name(chip)
    if target is None:
        raise UnsupportedError(f"unknown chip {chip!r}; known: {known_chip_names()}")
    if payload_size < 0:
        raise UnsupportedError(f"payload_size must be >= 0, not {payload_size}")
    project = project_name.encode("utf-8")
    if len(project) > 31:
        raise UnsupportedError(f"project name {project_name!r} is longer than 31 bytes")
    mode = _code_for(FLASH_MODES, flash_mode.upper(), "flash mode")
    size = _code_for(FLASH_SIZES, flash_size.upper(), "flash size")
    # "40m" where the chip has it, else the chip's default (code 0).
    freq = _code_for(target.flash_freqs, "40m", "flash freq") if "40m" in target.flash_freqs.values() else 0

    rng = random.Random(seed)
    code = rng.randbytes(payload_size)
    descriptor = layout.APP_DESC.pack(
        layout.APP_DESC_MAGIC,
        secure_version,
        bytes(8),
        encode_version(version),
        project,
        BUILD_TIME,
        BUILD_DATE,
        IDF_VERSION,
        hashlib.sha256(code).digest(),
        0,
        0,
        _MMU_PAGE_LOG2,
        bytes(3),
        bytes(72),
    )
    image = new_image(target.key)
    rom = image.ROM_LOADER
    drom = rom.DROM_MAP_START + layout.IMAGE_HEADERS_SIZE + layout.SEGMENT_HEADER.size
    irom = rom.IROM_MAP_START + 0x20
    # Two flash-mapped segments cannot share a 64 KiB MMU page (chips where DROM and IROM overlap).
    while irom // layout.MMU_PAGE == drom // layout.MMU_PAGE:
        irom += layout.MMU_PAGE
    iram = _region_start(rom, "IRAM")
    dram = _region_start(rom, "DRAM") + _DRAM_GAP
    image.segments = [
        image_section(".flash.appdesc", drom, descriptor + rng.randbytes(_RODATA_SIZE)),
        image_section(".flash.text", irom, code),
        image_section(".dram0.data", dram, rng.randbytes(_DRAM_SIZE)),
        image_section(".iram0.text", iram, rng.randbytes(_IRAM_SIZE)),
    ]
    image.entrypoint = iram
    image.flash_mode = mode
    image.flash_size_freq = (size << 4) | freq
    image.append_digest = True
    try:
        with quiet():
            out = image.save(None)
    # esptool's writer refuses layouts it cannot place; report them as ours.
    except Exception as exc:
        raise FormatError(f"esptool cannot lay out a {target.name} image: {exc}") from exc
    return bytes(out)


def _code_for(table: dict[int, str], name: str, what: str) -> int:
    for code, text in table.items():
        if text.upper() == name.upper():
            return code
    raise UnsupportedError(f"unknown {what} {name!r}; known: {', '.join(table.values())}")


def _region_start(rom: Any, kind: str) -> int:
    for start, _end, region in rom.MEMORY_MAP:
        if region == kind:
            return int(start)
    raise UnsupportedError(f"esptool's memory map of {rom.CHIP_NAME} has no {kind} region")


def build_bootloader_image(*, chip: str = "esp32", flash_size: str = "4MB", seed: int = 0) -> bytes:
    """A valid second-stage bootloader image for ``chip``: RAM segments only (the ROM copies them;
    it maps nothing from flash), an esp_bootloader_desc_t at the start of the DRAM segment, and the
    flash size in its header, which is what the chip's flash is configured from."""
    target = chip_by_name(chip)
    if target is None:
        raise UnsupportedError(f"unknown chip {chip!r}; known: {known_chip_names()}")
    size = _code_for(FLASH_SIZES, flash_size.upper(), "flash size")
    freq = _code_for(target.flash_freqs, "40m", "flash freq") if "40m" in target.flash_freqs.values() else 0
    rng = random.Random(seed)
    descriptor = layout.BOOTLOADER_DESC.pack(
        layout.BOOTLOADER_DESC_MAGIC, bytes(3), 1, IDF_VERSION, b"Jan  1 2026 12:00:00", bytes(16)
    )
    image = new_image(target.key)
    rom = image.ROM_LOADER
    iram = _region_start(rom, "IRAM")
    dram = _region_start(rom, "DRAM") + _DRAM_GAP
    image.segments = [
        image_section(".dram0.data", dram, descriptor + rng.randbytes(_DRAM_SIZE)),
        image_section(".iram_loader.text", iram + 0x1000, rng.randbytes(_IRAM_SIZE)),
        image_section(".iram.text", iram, rng.randbytes(_IRAM_SIZE)),
    ]
    image.entrypoint = iram
    image.flash_mode = _code_for(FLASH_MODES, "DIO", "flash mode")
    image.flash_size_freq = (size << 4) | freq
    image.append_digest = True
    try:
        with quiet():
            out = image.save(None)
    except Exception as exc:
        raise FormatError(f"esptool cannot lay out a {target.name} bootloader: {exc}") from exc
    return bytes(out)
