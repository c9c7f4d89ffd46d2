"""What a board family is: the USB IDs it answers to, which attached ports it claims, how it opens
one, and which firmware targets its boards can take.

Each family module of ``station.devices`` exports one ``FAMILY`` (a ``BoardFamily``);
``station.devices.families`` lists them. Discovery, ``station doctor``, the udev rules test, the
line's target check and ``station flash`` all read that one table, as esptool's ``targets/``
registry and pyOCD's probe aggregator do, so a new family is one module and one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from station.devices.base import Device, DeviceDescription, DeviceIdentity, Family, Mode


class Bus(StrEnum):
    """Where discovery sees a port: pyusb's device list, or the host's serial ports (pyserial)."""

    USB = "usb"
    SERIAL = "serial"


class FirmwareKind(StrEnum):
    """What a family's boards take: Particle Device OS modules, or ESP images."""

    PARTICLE = "particle-module"
    ESP = "esp-image"


@dataclass(frozen=True)
class UsbId:
    """One USB vendor/product pair a family answers to, and what it means.

    ``serial_interfaces``: how many UARTs the device has (FT4232H: 4). Each one is a tty of its own,
    so each is a slot of its own: its slot keeps pyserial's ``:1.N`` interface suffix.
    ``not_probed``: interface numbers that are not a board's UART (ESP-Prog's channel A is JTAG)
    and must never see the DTR/RTS reset dance.
    """

    vid: int
    pid: int
    name: str
    mode: Mode
    serial_interfaces: int = 1
    not_probed: frozenset[int] = frozenset()

    def to_json(self, family: Family) -> dict[str, str]:
        return {
            "vid": f"{self.vid:04x}",
            "pid": f"{self.pid:04x}",
            "family": family.value,
            "mode": self.mode.value,
            "name": self.name,
        }


@dataclass(frozen=True)
class SeenPort:
    """One attached thing as the operating system lists it, before any I/O.

    ``location``: pyusb's port path ("1-1.4") on the USB bus; pyserial's location with its
    configuration.interface suffix ("1-1.4:1.2") for a serial port; None when there is no USB
    behind it (a pty, a socket). ``slot``: set by a source that names its own slots (the simulated
    bench); otherwise the family derives the slot from the location.
    """

    bus: Bus
    location: str | None = None
    vid: int | None = None
    pid: int | None = None
    device: str | None = None  # the serial node or URL to open
    usb_serial_number: str | None = None
    description: str | None = None
    slot: str | None = None

    @property
    def usb_path(self) -> str | None:
        """The bus-port path without the interface suffix: "1-1.4:1.2" -> "1-1.4"."""
        return self.location.split(":", 1)[0] if self.location else None

    @property
    def interface(self) -> int | None:
        """The USB interface number of a serial port ("1-1.4:1.2" -> 2), None when not given."""
        if not self.location or ":" not in self.location:
            return None
        tail = self.location.rsplit(":", 1)[1].rsplit(".", 1)[-1]
        return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class Target:
    """The device some firmware is for: a Particle platform, an ESP chip, or (``esp=True`` with no
    chip) any ESP, as for a partition table alone. ``source`` names the firmware in refusals."""

    platform_id: int | None = None  # Particle
    platform_name: str | None = None
    chip: str | None = None  # ESP
    esp: bool = False
    source: str = field(default="the bundle", compare=False)

    @property
    def is_esp(self) -> bool:
        return self.chip is not None or self.esp

    @property
    def firmware(self) -> FirmwareKind:
        return FirmwareKind.ESP if self.is_esp else FirmwareKind.PARTICLE

    def describe(self) -> str:
        if self.chip is not None:
            return self.chip
        if self.esp:
            return "an ESP chip"
        return f"{self.platform_name or 'platform'} (id {self.platform_id})"

    def mismatch(self, family: Family, identity: DeviceIdentity, *, what: str | None = None) -> str | None:
        """Why a device of ``family`` is not this target (its family's ``accepts``), or None."""
        from station.devices.families import family_of  # the table imports every family module

        target = self if what is None else Target(self.platform_id, self.platform_name, self.chip, self.esp, what)
        return family_of(family).accepts(target, identity)


Options = Mapping[str, Any]


@dataclass(frozen=True)
class BoardFamily:
    """One family of boards: everything the rest of the station needs to know about it.

    ``claims(port)``: the description of a port this family flashes, or None (no I/O).
    ``open(description, options)``: the device, ready to flash (a Particle board in normal mode is
    switched into DFU mode); ``options`` are the device class's keyword settings. ``peek``: connect
    for identification only, never changing what the board does (listings); None: same as open.
    ``accepts(target, identity)``: why a board it identified cannot take ``target``, or None.
    """

    key: Family
    title: str
    bus: Bus
    firmware: FirmwareKind
    usb_ids: tuple[UsbId, ...]
    claims: Callable[[SeenPort], DeviceDescription | None]
    open: Callable[[DeviceDescription, Options], Device]
    accepts: Callable[[Target, DeviceIdentity], str | None]
    peek: Callable[[DeviceDescription, Options], Device] | None = None

    def usb_id(self, vid: int | None, pid: int | None) -> UsbId | None:
        """The table's entry for this pair, or None."""
        return next((u for u in self.usb_ids if u.vid == vid and u.pid == pid), None)

    def connect(self, description: DeviceDescription, options: Options, *, peek: bool = False) -> Device:
        """``peek`` when asked and the family has one, else ``open``."""
        if peek and self.peek is not None:
            return self.peek(description, options)
        return self.open(description, options)


def serial_slot(port: SeenPort, usb_id: UsbId) -> str:
    """The slot of a serial port: the source's name for it, else its USB location, keeping the
    interface suffix on a multi-port adapter (one slot per UART), else the device node."""
    if port.slot is not None:
        return port.slot
    if port.location:
        return port.location if usb_id.serial_interfaces > 1 else (port.usb_path or port.location)
    return port.device or "?"


def accepts_particle_platform(target: Target, identity: DeviceIdentity) -> str | None:
    """Both Particle families: a board takes firmware built for its own platform only."""
    if target.is_esp:
        return f"the device is a Particle {identity.platform}: it cannot take an ESP image ({target.describe()})"
    if identity.platform_id != target.platform_id:
        return f"device is {identity.platform} (id {identity.platform_id}), {target.source} is for {target.describe()}"
    return None
