"""What distinguishes one simulated ESP chip from another: detection values, eFuse and register maps.

Values follow esp-serial-protocol.md (§5, §6, §7); registers not listed read as zero.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

CHIP_DETECT_MAGIC_REG = 0x40001000
XTAL_HZ = 40_000_000

# ESP32 ROM crystal estimate = cali * 15625 * ck8m / 40; these give exactly 40 MHz, so the
# ROM's CHANGE_BAUDRATE scaling (esptool's "false ROM baud") cancels out to the requested rate.
_ESP32_RTC_CALI = 512
_ESP32_CK8M = 200


class MacLayout(Enum):
    ESP32 = "esp32"  # eFuse word 1 = MAC[2..5], word 2 = CRC8 << 16 | MAC[0..1]
    SPLIT = "split"  # low word = MAC[2..5], next word bits 0-15 = MAC[0..1]


@dataclass(frozen=True)
class SpiLayout:
    """The SPI1 "user command" registers esptool drives to talk to the flash chip."""

    base: int
    usr: int
    usr1: int
    usr2: int
    mosi_dlen: int
    miso_dlen: int
    w0: int
    addr_msb: bool  # address register holds the address left-aligned (ESP32)

    @property
    def cmd_reg(self) -> int:
        return self.base

    @property
    def addr_reg(self) -> int:
        return self.base + 0x04


@dataclass(frozen=True)
class ChipProfile:
    key: str  # esptool's --chip spelling: "esp32", "esp32s3", "esp32c3"
    name: str  # esptool's CHIP_NAME
    magic: int  # value at CHIP_DETECT_MAGIC_REG
    chip_id: int | None  # GET_SECURITY_INFO chip id; None: the ROM refuses the command
    spi: SpiLayout
    mac_reg: int  # address of the eFuse word holding MAC[2..5] (ESP32: word 1)
    mac_layout: MacLayout
    uart_clkdiv_reg: int
    rom_begin_words: int  # FLASH_BEGIN words the ROM takes (4 on ESP32, 5 later)
    oui: bytes  # Espressif OUI used for generated MACs
    fixed_regs: Mapping[int, int] = field(default_factory=dict)


_ESP32_EFUSE = 0x3FF5A000
_ESP32_SPI = SpiLayout(0x3FF42000, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x80, True)
_LATER_SPI = SpiLayout(0x60002000, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x58, False)

ESP32 = ChipProfile(
    key="esp32",
    name="ESP32",
    magic=0x00F01D83,
    chip_id=None,
    spi=_ESP32_SPI,
    mac_reg=_ESP32_EFUSE + 4,
    mac_layout=MacLayout.ESP32,
    uart_clkdiv_reg=0x3FF40014,
    rom_begin_words=4,
    oui=bytes.fromhex("240ac4"),
    fixed_regs={
        _ESP32_EFUSE + 0x0C: 0x0000A200,  # word 3: D0WD package, rev bit 0, 240 MHz rating
        _ESP32_EFUSE + 0x10: _ESP32_CK8M,  # word 4: CK8M frequency calibration
        _ESP32_EFUSE + 0x14: 0x00100000,  # word 5: rev bit 1 -> chip revision v3.0
        0x3FF6607C: 0x80000000,  # APB_CTL_DATE: rev bit 2
        0x3FF5F06C: _ESP32_RTC_CALI << 7,  # RTCCALICFG1
        0x3FF44038: 0x00000003,  # GPIO_STRAP: download boot
    },
)

ESP32S3 = ChipProfile(
    key="esp32s3",
    name="ESP32-S3",
    magic=0x00000009,
    chip_id=9,
    spi=_LATER_SPI,
    mac_reg=0x60007044,
    mac_layout=MacLayout.SPLIT,
    uart_clkdiv_reg=0x60000014,
    rom_begin_words=5,
    oui=bytes.fromhex("7cdfa1"),
    fixed_regs={0x60004038: 0x00000008},  # GPIO_STRAP: download boot
)

ESP32C3 = ChipProfile(
    key="esp32c3",
    name="ESP32-C3",
    magic=0x1B31506F,
    chip_id=5,
    spi=_LATER_SPI,
    mac_reg=0x60008844,
    mac_layout=MacLayout.SPLIT,
    uart_clkdiv_reg=0x60000014,
    rom_begin_words=5,
    oui=bytes.fromhex("58cf79"),
    fixed_regs={0x60004020: 0x00000008},  # GPIO_STRAP: download boot
)

CHIPS: dict[str, ChipProfile] = {p.key: p for p in (ESP32, ESP32S3, ESP32C3)}


def chip_profile(name: str) -> ChipProfile:
    """The profile for ``esp32`` / ``esp32-s3`` / ``ESP32-C3`` (any case, dash optional)."""
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return CHIPS[key]
    except KeyError:
        known = ", ".join(sorted(CHIPS))
        raise ValueError(f"unknown ESP chip {name!r}; simulated chips: {known}") from None


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff``, ``aa-bb-...`` or 12 hex digits -> 6 bytes; ValueError otherwise."""
    digits = text.replace(":", "").replace("-", "").strip()
    if len(digits) != 12:
        raise ValueError(f"MAC {text!r} must have 6 bytes (12 hex digits)")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"MAC {text!r} is not hexadecimal") from None


def random_mac(profile: ChipProfile, rng: random.Random) -> bytes:
    return profile.oui + bytes(rng.randrange(256) for _ in range(3))


def crc8_mac(mac: bytes) -> int:
    """CRC-8 (reflected polynomial 0x8C, init 0) over the MAC, as ESP32 eFuse block 0 stores it."""
    crc = 0
    for byte in mac:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def mac_registers(profile: ChipProfile, mac: bytes) -> dict[int, int]:
    """The two eFuse words that hold ``mac``, by address."""
    (low,) = struct.unpack(">I", mac[2:6])
    high = (mac[0] << 8) | mac[1]
    if profile.mac_layout is MacLayout.ESP32:
        high |= crc8_mac(mac) << 16
    return {profile.mac_reg: low, profile.mac_reg + 4: high}
