"""Particle's numbering: platform ids and names, where each platform links its user part.

Names follow npm ``@particle/device-constants`` 4.2.1, the table ``particle binary inspect`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from firmware_tools.errors import FirmwareError

PLATFORMS: Mapping[int, str] = MappingProxyType(
    {
        0: "core",
        3: "gcc",
        6: "photon",
        8: "p1",
        10: "electron",
        11: "esp32",
        12: "argon",
        13: "boron",
        14: "xenon",
        15: "esomx",
        22: "asom",
        23: "bsom",
        24: "xsom",
        25: "b5som",
        26: "tracker",
        28: "trackerm",
        31: "raspi",
        32: "p2",
        35: "msom",
        37: "electron2",
        38: "sulu",
        42: "tachyon",
        43: "linux",
        82: "oak",
        88: "duo",
        103: "bluz",
        60000: "newhal",
    }
)

# Platforms of device-constants generation > 0: the reference parser's "known platform" set that
# scores a prefix candidate (bluz, gcc and other 3rd-party ids do not count).
SCORING_PLATFORMS: frozenset[int] = frozenset({0, 6, 8, 10, 12, 13, 14, 15, 22, 23, 24, 25, 26, 28, 32, 35, 37, 38})

_BY_NAME: Mapping[str, int] = MappingProxyType({name: pid for pid, name in PLATFORMS.items()})
# Names people type for the same thing.
_ALIASES: Mapping[str, int] = MappingProxyType(
    {"e-series": 10, "eseries": 10, "photon2": 32, "photon-2": 32, "m-som": 35, "tracker-m": 28, "monitor-one": 26}
)

# Gen2 STM32F2xx: one fixed user-part address per platform.
_GEN2_USER_PART: Mapping[int, int] = MappingProxyType({6: 0x080A0000, 8: 0x080A0000, 10: 0x08080000})
# Gen3 nRF52840: user part index 1 is the 128 KiB app, index 2 the 256 KiB app of Device OS >= 3.1.
NRF52840_PLATFORMS: frozenset[int] = frozenset({12, 13, 14, 15, 22, 23, 24, 25, 26})
_NRF_USER_PART: Mapping[int, int] = MappingProxyType({1: 0x000D4000, 2: 0x000B4000})
# RTL872x: the user part grows left from a fixed end address; its suffix carries TLVs.
RTL872X_PLATFORMS: frozenset[int] = frozenset({28, 32, 35})
RTL872X_USER_PART_END = 0x085FFFFC
# Real RTL872x builds start the user part on a flash-sector boundary.
RTL872X_SECTOR = 0x1000

# Platforms that run no Device OS older than 4.0 (E404X, Tracker M, P2/Photon 2, M-SoM, Electron 2,
# sulu): their apps cannot use PRODUCT_ID, which is a compile error from 4.0 on.
DEVICE_OS_4_ONLY_PLATFORMS: frozenset[int] = frozenset({15, 28, 32, 35, 37, 38})

# Platforms Particle supports for new apps today: those Device OS's develop branch builds
# (device-os build/platform-id.mk, 2024-10: argon boron esomx bsom b5som tracker trackerm p2 msom;
# asom is built but not public) plus Electron 2, public in @particle/device-constants 4 and newer than
# that snapshot. Gen 2 (Photon, P1, Electron) stops at Device OS 2.x; xenon, oak, bluz, raspi and the
# like are gone. Every one of these runs a current Device OS (>= 4), so a new app has no PRODUCT_ID.
CURRENT_PLATFORMS: frozenset[int] = frozenset({12, 13, 15, 23, 25, 26, 28, 32, 35, 37})
DEFAULT_NEW_APP_PLATFORM = 32  # Photon 2 / P2: Particle's current Wi-Fi platform

# Module version of the first Device OS 4 system part: from then on PRODUCT_ID is gone and the
# product id field of an app holds its PLATFORM_ID.
DEVICE_OS_4_MODULE_VERSION = 4000


def platform_name(platform_id: int) -> str | None:
    return PLATFORMS.get(platform_id)


def platform_id_from(text: str) -> int:
    """A platform id from a name ("argon", "P2") or a number ("12", "0x0c")."""
    key = text.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        value = int(key, 0)
    except ValueError:
        names = ", ".join(sorted(_BY_NAME))
        raise FirmwareError(f"unknown platform {text!r}", hint=f"use an id or one of: {names}") from None
    if not 0 <= value <= 0xFFFF:
        raise FirmwareError(f"platform id {value} is outside 0..65535")
    return value


def is_grows_left(platform_id: int) -> bool:
    return platform_id in RTL872X_PLATFORMS


def default_user_part_address(platform_id: int, index: int) -> int | None:
    """Where ``platform_id`` links user part ``index`` (the start for grows-left platforms is computed)."""
    if platform_id in _GEN2_USER_PART:
        return _GEN2_USER_PART[platform_id]
    if platform_id in NRF52840_PLATFORMS:
        return _NRF_USER_PART.get(index)
    return None
