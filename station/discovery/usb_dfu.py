"""Particle boards on USB, seen through pyusb: in DFU mode, or running their firmware (switched on open).

``scan`` only enumerates (descriptors the host already holds); the device ID string is read when the
line opens the device, so a board without permission fails there, named, with the udev fix.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from station.devices.base import Device, DeviceDescription, Family, Mode
from station.devices.particle_dfu import (
    UDEV_HINT,
    ParticleDfuDevice,
    ParticleNormalModeDevice,
    port_path_of,
)
from station.discovery.base import Candidate
from station.discovery.linger import Linger
from station.discovery.probe import PeekableCandidate
from station.errors import DeviceDisconnected, DeviceError, Reason
from station.protocols.particle_usb import Platform, platform_for_usb


def read_usb_serial(usb_device: Any, where: str) -> str | None:
    """The USB serial-number string (Particle: the device ID). Opens the device; EACCES is a PERMISSION error."""
    index = getattr(usb_device, "iSerialNumber", 0)
    if not index:
        return None
    try:
        # Asked directly: pyusb's ``langids`` property would swallow a permission error into "no strings".
        langids = usb.util.get_langids(usb_device)
        if not langids:
            return None
        text = usb.util.get_string(usb_device, index, langids[0])
    except ValueError:
        return None
    except usb.core.USBError as exc:
        if exc.errno == errno.EACCES:
            raise DeviceError(
                "permission denied opening the USB device", device=where, hint=UDEV_HINT, reason=Reason.PERMISSION
            ) from None
        if exc.errno in (errno.ENODEV, errno.ENOENT, errno.EIO):
            raise DeviceDisconnected("device is gone from the bus", device=where, hint="re-plug the board") from None
        raise DeviceError(f"cannot read the USB serial number: {exc.strerror or exc}", device=where) from None
    return None if text is None else str(text)


@dataclass(frozen=True)
class _Seen:
    slot: str
    usb_device: Any
    platform: Platform
    dfu: bool


class UsbParticleSource:
    """Particle devices on USB (VID 0x2B04, Core 0x1D50), DFU and normal mode, keyed by USB port path.

    ``backend`` is what pyusb uses (None: the one it finds, libusb on a bench). ``device_options``
    go to every ``ParticleDfuDevice`` / ``ParticleNormalModeDevice`` (timeouts, clock, sleep).
    ``slot_name`` turns a USB port path into the slot's name (a simulated bench names its own).
    ``linger``: seconds a slot is still reported after its device vanished (re-enumeration; see
    ``station.discovery.linger``). Opening a candidate looks up what is on its port at that moment,
    so a candidate stays usable across re-enumeration (the retry key) and fails cleanly once unplugged.
    A source-wide problem (no libusb) is kept in ``problem`` and scans return nothing meanwhile.
    """

    def __init__(
        self,
        *,
        backend: object | None = None,
        device_options: Mapping[str, Any] | None = None,
        slot_name: Callable[[str], str | None] = lambda port_path: port_path,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.device_options = dict(device_options or {})
        self.slot_name = slot_name
        self.problem: DeviceError | None = None
        self.linger = Linger(linger, clock)

    def scan(self) -> list[Candidate]:
        return self.linger.apply([self._candidate(seen) for seen in self._enumerate()])

    def _enumerate(self) -> list[_Seen]:
        try:
            devices = list(usb.core.find(find_all=True, backend=self.backend))
        except usb.core.NoBackendError:
            self.problem = DeviceError(
                "no USB backend available to pyusb: Particle devices on USB cannot be seen",
                hint="install libusb-1.0 (Debian: apt install libusb-1.0-0)",
                reason=Reason.NOT_FOUND,
            )
            return []
        except (usb.core.USBError, OSError) as exc:
            self.problem = DeviceError(f"USB enumeration failed: {exc}", reason=Reason.NOT_FOUND)
            return []
        self.problem = None
        found = []
        for usb_device in devices:
            try:
                seen = self._particle(usb_device)
            except Exception:  # one odd device (vanished mid-enumeration, bad descriptor) must not hide the rest
                continue
            if seen is not None:
                found.append(seen)
        return found

    def _particle(self, usb_device: Any) -> _Seen | None:
        known = platform_for_usb(int(usb_device.idVendor), int(usb_device.idProduct))
        if known is None:
            return None
        slot = self.slot_name(port_path_of(usb_device))
        return None if slot is None else _Seen(slot, usb_device, known[0], known[1])

    def _now_at(self, slot: str) -> _Seen:
        for seen in self._enumerate():
            if seen.slot == slot:
                return seen
        if self.problem is not None:
            raise self.problem
        raise DeviceDisconnected("no Particle device on this port any more", device=slot, hint="re-plug the board")

    def _candidate(self, seen: _Seen) -> PeekableCandidate:
        usb_device, slot = seen.usb_device, seen.slot
        description = DeviceDescription(
            family=Family.PARTICLE_DFU,
            port_path=slot,
            mode=Mode.DFU if seen.dfu else Mode.NORMAL,
            vid=int(usb_device.idVendor),
            pid=int(usb_device.idProduct),
        )

        def open_for_flashing() -> Device:
            now = self._now_at(slot)
            return self._dfu(now) if now.dfu else self._normal(now).enter_dfu()

        def peek() -> Device:
            now = self._now_at(slot)
            return self._dfu(now) if now.dfu else self._normal(now)

        return PeekableCandidate(description, open_for_flashing, peek)

    def _dfu(self, seen: _Seen) -> ParticleDfuDevice:
        serial = read_usb_serial(seen.usb_device, f"{seen.platform.name} at {seen.slot}")
        return ParticleDfuDevice(
            seen.usb_device,
            seen.platform,
            port_path=seen.slot,
            serial=serial,
            backend=self.backend,
            **self.device_options,
        )

    def _normal(self, seen: _Seen) -> ParticleNormalModeDevice:
        serial = read_usb_serial(seen.usb_device, f"{seen.platform.name} at {seen.slot}")
        return ParticleNormalModeDevice(
            seen.usb_device,
            seen.platform,
            port_path=seen.slot,
            serial=serial,
            backend=self.backend,
            **self.device_options,
        )

    def close(self) -> None:
        return None
