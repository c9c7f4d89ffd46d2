"""Particle boards on USB, seen through pyusb: in DFU mode, or running their firmware (switched on open).

``scan`` only enumerates (descriptors the host already holds); the device ID string is read when the
line opens the device, so a board without permission fails there, named, with the udev fix.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
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


class UsbParticleSource:
    """Particle devices on USB (VID 0x2B04, Core 0x1D50), DFU and normal mode, keyed by USB port path.

    ``backend`` is what pyusb uses (None: the one it finds, libusb on a bench). ``device_options``
    go to every ``ParticleDfuDevice`` / ``ParticleNormalModeDevice`` (timeouts, clock, sleep).
    ``slot_name`` turns a USB port path into the slot's name (a simulated bench names its own).
    A source-wide problem (no libusb) is kept in ``problem`` and scans return nothing meanwhile.
    """

    def __init__(
        self,
        *,
        backend: object | None = None,
        device_options: Mapping[str, Any] | None = None,
        slot_name: Callable[[str], str | None] = lambda port_path: port_path,
    ) -> None:
        self.backend = backend
        self.device_options = dict(device_options or {})
        self.slot_name = slot_name
        self.problem: DeviceError | None = None

    def scan(self) -> list[PeekableCandidate]:
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
                candidate = self._candidate(usb_device)
            except Exception:  # one odd device (vanished mid-enumeration, bad descriptor) must not hide the rest
                continue
            if candidate is not None:
                found.append(candidate)
        return sorted(found, key=lambda c: c.slot)

    def _candidate(self, usb_device: Any) -> PeekableCandidate | None:
        vid, pid = int(usb_device.idVendor), int(usb_device.idProduct)
        known = platform_for_usb(vid, pid)
        if known is None:
            return None
        platform, dfu = known
        port_path = self.slot_name(port_path_of(usb_device))
        if port_path is None:  # not one of this source's slots
            return None
        description = DeviceDescription(
            family=Family.PARTICLE_DFU, port_path=port_path, mode=Mode.DFU if dfu else Mode.NORMAL, vid=vid, pid=pid
        )
        if dfu:

            def open_dfu() -> Device:
                return self._dfu(usb_device, platform, port_path)

            return PeekableCandidate(description, open_dfu, open_dfu)

        def open_switched() -> Device:
            return self._normal(usb_device, platform, port_path).enter_dfu()

        def peek_normal() -> Device:
            return self._normal(usb_device, platform, port_path)

        return PeekableCandidate(description, open_switched, peek_normal)

    def _dfu(self, usb_device: Any, platform: Platform, port_path: str) -> ParticleDfuDevice:
        serial = read_usb_serial(usb_device, f"{platform.name} at {port_path}")
        return ParticleDfuDevice(
            usb_device, platform, port_path=port_path, serial=serial, backend=self.backend, **self.device_options
        )

    def _normal(self, usb_device: Any, platform: Platform, port_path: str) -> ParticleNormalModeDevice:
        serial = read_usb_serial(usb_device, f"{platform.name} at {port_path}")
        return ParticleNormalModeDevice(
            usb_device, platform, port_path=port_path, serial=serial, backend=self.backend, **self.device_options
        )

    def close(self) -> None:
        return None
