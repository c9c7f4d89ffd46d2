"""Serial ports that are flashable boards: Particle CDC ports (listening mode + YModem) and ESP USB-serial bridges.

One ``comports()`` listing per scan, no port opened. The slot is the port's USB location without
its interface suffix ("1-1.4:1.0" -> "1-1.4"), the same key the USB source gives the same board.
A port the user may not open is still listed; opening it fails with a PERMISSION error and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from serial.tools import list_ports

from station.devices.base import Device, DeviceDescription, Family, Mode
from station.devices.esp import EspPort, find_esp_ports
from station.devices.particle_serial import ParticleSerialDevice, is_particle_port
from station.discovery.base import Candidate
from station.discovery.linger import Linger
from station.discovery.probe import PeekableCandidate
from station.errors import DeviceDisconnected, DeviceError, Reason

SERIAL_PERMISSION_HINT = (
    "install udev/60-benchflash.rules into /etc/udev/rules.d (then re-plug the board), "
    "or add yourself to the dialout group and log in again"
)


def usb_location(location: str | None) -> str | None:
    """pyserial's "1-1.4:1.0" (bus-port path, then configuration.interface) as the slot key "1-1.4"."""
    return location.split(":", 1)[0] if location else None


def check_port_access(device: str, access: Callable[[str, int], bool] = os.access) -> None:
    """Raise a PERMISSION error when ``device`` is a device node this user cannot read and write."""
    if device.startswith("/") and os.path.exists(device) and not access(device, os.R_OK | os.W_OK):
        raise DeviceError(
            f"permission denied on {device}", device=device, hint=SERIAL_PERMISSION_HINT, reason=Reason.PERMISSION
        )


class SerialPortSource:
    """Particle serial ports and ESP bridges on this host's serial ports.

    ``particle_options`` go to every ``ParticleSerialDevice``, ``esp_options`` to every ``EspDevice``.
    ``linger``: seconds a slot is still reported after its port vanished (a Particle board rebooting
    after a transfer). Opening a candidate looks up the port's device node again by USB location,
    since a board that re-enumerated may come back as another /dev/ttyACMn.
    ``comports``, ``access`` and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        particle: bool = True,
        esp: bool = True,
        particle_options: Mapping[str, Any] | None = None,
        esp_options: Mapping[str, Any] | None = None,
        comports: Callable[[], Sequence[Any]] = list_ports.comports,
        access: Callable[[str, int], bool] = os.access,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.particle = particle
        self.esp = esp
        self.particle_options = dict(particle_options or {})
        self.esp_options = dict(esp_options or {})
        self._comports = comports
        self._access = access
        self.problem: DeviceError | None = None
        self.linger = Linger(linger, clock)

    def _list(self) -> list[Any]:
        try:
            ports = list(self._comports())
        except Exception as exc:  # a broken sysfs entry must not stop the line
            self.problem = DeviceError(f"cannot list serial ports: {exc}", reason=Reason.NOT_FOUND)
            return []
        self.problem = None
        return ports

    def _node_now(self, slot: str, device: str) -> str:
        """The device node of the port in ``slot`` now (it may have come back under another name)."""
        for info in self._list():
            try:
                if (usb_location(getattr(info, "location", None)) or str(info.device)) == slot:
                    return str(info.device)
            except Exception:
                continue
        if device.startswith("/") and not os.path.exists(device):
            raise DeviceDisconnected("the serial port is gone", device=slot, hint="re-plug the board")
        return device

    def scan(self) -> list[Candidate]:
        ports = self._list()
        found = []
        for info in ports:
            try:
                candidate = self._candidate(info)
            except Exception:  # one odd port must not hide the rest
                continue
            if candidate is not None:
                found.append(candidate)
        return self.linger.apply(found)

    def _candidate(self, info: Any) -> PeekableCandidate | None:
        vid, pid = getattr(info, "vid", None), getattr(info, "pid", None)
        if self.particle and is_particle_port(vid, pid):
            return self._particle(info, vid, pid)
        if self.esp:
            ports = find_esp_ports(lambda: [info])
            if ports:
                return self._esp(ports[0])
        return None

    def _particle(self, info: Any, vid: int | None, pid: int | None) -> PeekableCandidate:
        device = str(info.device)
        port_path = usb_location(getattr(info, "location", None)) or device
        serial_number = getattr(info, "serial_number", None)
        description = DeviceDescription(
            family=Family.PARTICLE_SERIAL,
            port_path=port_path,
            mode=Mode.LISTENING,
            vid=vid,
            pid=pid,
            usb_serial_number=serial_number,
            serial_port=device,
        )

        def open_serial() -> Device:
            node = self._node_now(port_path, device)
            check_port_access(node, self._access)
            return ParticleSerialDevice(
                node, port_path=port_path, usb_serial_number=serial_number, vid=vid, pid=pid, **self.particle_options
            )

        return PeekableCandidate(description, open_serial, open_serial)

    def _esp(self, port: EspPort) -> PeekableCandidate:
        description = DeviceDescription(
            family=Family.ESP,
            port_path=port.port_path,
            mode=Mode.BOOTLOADER,
            vid=port.vid,
            pid=port.pid,
            usb_serial_number=port.usb_serial_number,
            serial_port=port.device,
        )

        def open_esp() -> Device:
            node = self._node_now(port.port_path, port.device)
            check_port_access(node, self._access)
            return dataclasses.replace(port, device=node).open(**self.esp_options)

        return PeekableCandidate(description, open_esp, open_esp)

    def close(self) -> None:
        return None
