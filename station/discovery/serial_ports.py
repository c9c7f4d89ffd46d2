"""Serial ports that are flashable boards: every family of the table whose bus is serial (Particle
CDC ports in listening mode, ESP boards behind the table's USB-serial bridges).

One ``comports()`` listing per scan, no port opened. A port's location keeps pyserial's
configuration.interface suffix ("1-1.4:1.2"): each UART of a multi-port adapter (FT4232H, CP2108)
is its own slot, while a single-port device keeps the bare USB path ("1-1.4"), the same key the
USB source gives the same board. A port the user may not open is still listed; opening it fails
with a PERMISSION error and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from serial.tools import list_ports

from station.devices import esp as esp_family
from station.devices.base import Device, DeviceDescription, Family
from station.devices.families import FAMILIES
from station.devices.family import BoardFamily, Bus
from station.devices.particle_serial import seen_serial_port
from station.discovery.base import Candidate
from station.discovery.linger import Linger
from station.discovery.probe import PeekableCandidate
from station.errors import DeviceDisconnected, DeviceError, Reason

SERIAL_PERMISSION_HINT = (
    "install udev/60-benchflash.rules into /etc/udev/rules.d (then re-plug the board), "
    "or add yourself to the dialout group and log in again"
)


def usb_location(location: str | None) -> str | None:
    """pyserial's location as the station keeps it: "1-1.4:1.2" (bus-port path, then
    configuration.interface) stays whole, so the four ports of an FT4232H stay four."""
    return location or None


def check_port_access(device: str, access: Callable[[str, int], bool] = os.access) -> None:
    """Raise a PERMISSION error when ``device`` is a device node this user cannot read and write."""
    if device.startswith("/") and os.path.exists(device) and not access(device, os.R_OK | os.W_OK):
        raise DeviceError(
            f"permission denied on {device}", device=device, hint=SERIAL_PERMISSION_HINT, reason=Reason.PERMISSION
        )


class SerialPortSource:
    """The serial-bus families' boards on this host's serial ports.

    ``particle_options`` go to every Particle serial device, ``esp_options`` to every ESP device
    (``options`` maps any other family to its own). ``esp_slots``: slots the profile names
    explicitly; a port there whose IDs no family knows is taken as an ESP board on the profile's
    word. ``linger``: seconds a slot is still reported after its port vanished (a Particle board
    rebooting after a transfer). Opening a candidate looks up the port's device node again by its
    slot, since a board that re-enumerated may come back as another /dev/ttyACMn.
    ``comports``, ``access`` and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        particle: bool = True,
        esp: bool = True,
        particle_options: Mapping[str, Any] | None = None,
        esp_options: Mapping[str, Any] | None = None,
        options: Mapping[Family, Mapping[str, Any]] | None = None,
        esp_slots: Collection[str] = (),
        comports: Callable[[], Sequence[Any]] = list_ports.comports,
        access: Callable[[str, int], bool] = os.access,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        families: Sequence[BoardFamily] = FAMILIES,
    ) -> None:
        skipped = {Family.PARTICLE_SERIAL} if not particle else set()
        if not esp:
            skipped.add(Family.ESP)
        self.families = tuple(f for f in families if f.bus is Bus.SERIAL and f.key not in skipped)
        self.options: dict[Family, dict[str, Any]] = {k: dict(v) for k, v in (options or {}).items()}
        self.options.setdefault(Family.PARTICLE_SERIAL, {}).update(particle_options or {})
        self.options.setdefault(Family.ESP, {}).update(esp_options or {})
        self.esp_slots = frozenset(esp_slots) if esp else frozenset()
        self._comports = comports
        self._access = access
        self.problem: DeviceError | None = None
        self.linger = Linger(linger, clock)

    @property
    def particle_options(self) -> dict[str, Any]:
        return self.options[Family.PARTICLE_SERIAL]

    @property
    def esp_options(self) -> dict[str, Any]:
        return self.options[Family.ESP]

    def _list(self) -> list[Any]:
        try:
            ports = list(self._comports())
        except Exception as exc:  # a broken sysfs entry must not stop the line
            self.problem = DeviceError(f"cannot list serial ports: {exc}", reason=Reason.NOT_FOUND)
            return []
        self.problem = None
        return ports

    def _claim(self, info: Any) -> tuple[BoardFamily, DeviceDescription] | None:
        port = seen_serial_port(info)
        for family in self.families:
            description = family.claims(port)
            if description is not None:
                return family, description
        # The profile names the slot (a USB location, with or without its interface, or a device
        # node): its word makes a port behind an unknown bridge an ESP board.
        for slot in (port.location, port.usb_path, port.device):
            if slot is not None and slot in self.esp_slots:
                named = esp_family.claim_named(dataclasses.replace(port, slot=slot))
                return None if named is None else (esp_family.FAMILY, named)
        return None

    def _node_now(self, slot: str, device: str) -> str:
        """The device node of the port in ``slot`` now (it may have come back under another name)."""
        for info in self._list():
            try:
                claimed = self._claim(info)
            except Exception:
                continue
            if claimed is not None and claimed[1].port_path == slot and claimed[1].serial_port:
                return claimed[1].serial_port
        if device.startswith("/") and not os.path.exists(device):
            raise DeviceDisconnected("the serial port is gone", device=slot, hint="re-plug the board")
        return device

    def scan(self) -> list[Candidate]:
        ports = self._list()
        found = []
        for info in ports:
            try:
                claimed = self._claim(info)
            except Exception:  # one odd port must not hide the rest
                continue
            if claimed is not None:
                found.append(self._offer(*claimed))
        return self.linger.apply(found)

    def _offer(self, family: BoardFamily, description: DeviceDescription) -> PeekableCandidate:
        options = self.options.get(family.key, {})

        def connect(peek: bool) -> Device:
            node = self._node_now(description.port_path, description.serial_port or "")
            check_port_access(node, self._access)
            return family.connect(dataclasses.replace(description, serial_port=node), options, peek=peek)

        return PeekableCandidate(description, lambda: connect(False), lambda: connect(True))

    def close(self) -> None:
        return None
