"""The one table of board families. Discovery, ``station doctor`` (and its ``--usb-ids``), the udev
rules test, the line's target check and ``station flash`` read it; a new family is one module
exporting ``FAMILY`` and one line here.

The order is the order of preference: a board that two families could claim (a Particle board seen
on USB and as its serial port) is taken by the first.
"""

from __future__ import annotations

from station.devices import esp, particle_dfu, particle_serial
from station.devices.base import Family
from station.devices.family import BoardFamily, FirmwareKind, UsbId

FAMILIES: tuple[BoardFamily, ...] = (
    particle_dfu.FAMILY,
    particle_serial.FAMILY,
    esp.FAMILY,
)

_BY_KEY = {f.key: f for f in FAMILIES}


def family_of(key: Family) -> BoardFamily:
    """The table's entry for ``key`` (every ``Family`` has one)."""
    return _BY_KEY[key]


def families_taking(firmware: FirmwareKind) -> frozenset[Family]:
    """The families whose boards take ``firmware``."""
    return frozenset(f.key for f in FAMILIES if f.firmware is firmware)


def all_usb_ids() -> tuple[tuple[BoardFamily, UsbId], ...]:
    """Every USB ID of every family, in table order (an ID two families claim is listed twice)."""
    return tuple((f, u) for f in FAMILIES for u in f.usb_ids)


def known_usb_id(vid: int | None, pid: int | None) -> UsbId | None:
    """The first family's entry for this pair, or None: not a board the station flashes."""
    for family in FAMILIES:
        found = family.usb_id(vid, pid)
        if found is not None:
            return found
    return None


def usb_ids_json() -> list[dict[str, str]]:
    """The table as ``station doctor --usb-ids --json`` prints it: {vid, pid, family, mode, name}."""
    return [usb_id.to_json(family.key) for family, usb_id in all_usb_ids()]
