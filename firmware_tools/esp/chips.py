"""The ESP32-family chips an image header can name, and their flash parameter encodings.

Kept as a plain table (checked against esptool's own target classes by the tests) so that sniffing
a file never has to import esptool.
"""

from __future__ import annotations

from dataclasses import dataclass

# Header byte 2: SPI flash mode, the same on every chip.
FLASH_MODES: dict[int, str] = {0: "QIO", 1: "QOUT", 2: "DIO", 3: "DOUT"}

# High nibble of header byte 3: flash size, the same on every ESP32-family chip.
FLASH_SIZES: dict[int, str] = {
    0: "1MB",
    1: "2MB",
    2: "4MB",
    3: "8MB",
    4: "16MB",
    5: "32MB",
    6: "64MB",
    7: "128MB",
}

_ESP32_FREQS = {0xF: "80m", 0x0: "40m", 0x1: "26m", 0x2: "20m"}
_FAST_FREQS = {0xF: "80m", 0x0: "40m", 0x2: "20m"}
_H_FREQS = {0xF: "48m", 0x0: "24m", 0x1: "16m", 0x2: "12m"}
_H_FAST_FREQS = {0xF: "48m", 0x0: "24m"}


@dataclass(frozen=True)
class Chip:
    """One chip: the id its images carry, esptool's key for it, the name esptool prints."""

    chip_id: int
    key: str
    name: str
    # Low nibble of header byte 3 -> flash frequency; the tables differ per chip.
    flash_freqs: dict[int, str]


CHIPS: tuple[Chip, ...] = (
    Chip(0, "esp32", "ESP32", _ESP32_FREQS),
    Chip(2, "esp32s2", "ESP32-S2", _ESP32_FREQS),
    Chip(9, "esp32s3", "ESP32-S3", _ESP32_FREQS),
    Chip(5, "esp32c3", "ESP32-C3", _ESP32_FREQS),
    Chip(12, "esp32c2", "ESP32-C2", {0xF: "60m", 0x0: "30m", 0x1: "20m", 0x2: "15m"}),
    Chip(13, "esp32c6", "ESP32-C6", {0x0: "80m", 0x2: "20m"}),
    Chip(20, "esp32c61", "ESP32-C61", _FAST_FREQS),
    Chip(23, "esp32c5", "ESP32-C5", _FAST_FREQS),
    Chip(31, "esp32e22", "ESP32-E22", _ESP32_FREQS),
    Chip(16, "esp32h2", "ESP32-H2", _H_FREQS),
    Chip(25, "esp32h21", "ESP32-H21", _H_FAST_FREQS),
    Chip(18, "esp32p4", "ESP32-P4", _ESP32_FREQS),
    Chip(28, "esp32h4", "ESP32-H4", _H_FAST_FREQS),
    Chip(32, "esp32s31", "ESP32-S31", _FAST_FREQS),
)

_BY_ID = {c.chip_id: c for c in CHIPS}
_BY_KEY = {c.key: c for c in CHIPS}


def chip_by_id(chip_id: int) -> Chip | None:
    return _BY_ID.get(chip_id)


def normalise_chip_name(text: str) -> str:
    """``"ESP32-S3"``, ``"esp32s3"`` and ``"esp32_s3"`` all become esptool's key ``"esp32s3"``."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def chip_by_name(text: str) -> Chip | None:
    """The chip a user names in any of the usual spellings, or None."""
    return _BY_KEY.get(normalise_chip_name(text))


def known_chip_names() -> str:
    return ", ".join(c.key for c in CHIPS)
