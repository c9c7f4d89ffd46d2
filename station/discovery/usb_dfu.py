"""Boards on the USB bus, seen through pyusb: every family of the table whose bus is USB (Particle
boards in DFU mode, or running their firmware and switched on open).

``scan`` only enumerates (descriptors the host already holds) and asks each family whether it
claims the device; the device ID string is read when the line opens the device, so a board without
permission fails there, named, with the udev fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import usb.core

from station.devices.base import Device, DeviceDescription
from station.devices.families import FAMILIES
from station.devices.family import BoardFamily, Bus
from station.devices.particle_dfu import port_path_of, read_usb_serial, seen_usb_port
from station.discovery.base import Candidate
from station.discovery.linger import Linger
from station.discovery.probe import PeekableCandidate
from station.errors import DeviceError, Reason

__all__ = ["UsbParticleSource", "UsbSource", "read_usb_serial"]


class UsbSource:
    """Devices on USB that a USB family of the table claims, keyed by USB port path.

    ``backend`` is what pyusb uses (None: the one it finds, libusb on a bench). ``device_options``
    go to every device the families open (timeouts, clock, sleep); the backend goes with them.
    ``slot_name`` turns a USB port path into the slot's name (a simulated bench names its own;
    None: not this source's). ``linger``: seconds a slot is still reported after its device vanished
    (re-enumeration; see ``station.discovery.linger``). Opening a candidate looks up what is on its
    port at that moment, so a candidate stays usable across re-enumeration (the retry key) and fails
    cleanly once unplugged. A source-wide problem (no libusb) is kept in ``problem`` and scans
    return nothing meanwhile.
    """

    def __init__(
        self,
        *,
        backend: object | None = None,
        device_options: Mapping[str, Any] | None = None,
        slot_name: Callable[[str], str | None] = lambda port_path: port_path,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        families: Sequence[BoardFamily] = FAMILIES,
    ) -> None:
        self.backend = backend
        self.device_options = dict(device_options or {})
        self.slot_name = slot_name
        self.problem: DeviceError | None = None
        self.linger = Linger(linger, clock)
        self.families = tuple(f for f in families if f.bus is Bus.USB)

    def scan(self) -> list[Candidate]:
        try:
            devices = list(usb.core.find(find_all=True, backend=self.backend))
        except usb.core.NoBackendError:
            self.problem = DeviceError(
                "no USB backend available to pyusb: Particle devices on USB cannot be seen",
                hint="install libusb-1.0 (Debian: apt install libusb-1.0-0)",
                reason=Reason.NOT_FOUND,
            )
            return self.linger.apply([])
        except (usb.core.USBError, OSError) as exc:
            self.problem = DeviceError(f"USB enumeration failed: {exc}", reason=Reason.NOT_FOUND)
            return self.linger.apply([])
        self.problem = None
        found = []
        for usb_device in devices:
            try:
                candidate = self._candidate(usb_device)
            except Exception:  # one odd device (vanished mid-enumeration, bad descriptor) must not hide the rest
                continue
            if candidate is not None:
                found.append(candidate)
        return self.linger.apply(found)

    def _candidate(self, usb_device: Any) -> PeekableCandidate | None:
        slot = self.slot_name(port_path_of(usb_device))
        if slot is None:
            return None
        port = seen_usb_port(usb_device, slot)
        for family in self.families:
            description = family.claims(port)
            if description is not None:
                return self._offer(family, description)
        return None

    def _offer(self, family: BoardFamily, description: DeviceDescription) -> PeekableCandidate:
        options = {**self.device_options, "backend": self.backend}

        def open_for_flashing() -> Device:
            return family.connect(description, options)

        def peek() -> Device:
            return family.connect(description, options, peek=True)

        return PeekableCandidate(description, open_for_flashing, peek)

    def close(self) -> None:
        return None


# The name the rest of the station (and its tests) has always used for the USB source.
UsbParticleSource = UsbSource
