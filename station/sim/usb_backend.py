"""A pyusb backend (``usb.backend.IBackend``) whose bus holds simulated Particle devices.

Pass it as ``backend=`` to ``usb.core.find`` or to the station's discovery, exactly where libusb
would go. Devices can be attached and detached at run time (hotplug); each re-enumeration gets a
new bus address and invalidates open handles, as on a real bus. libusb's errors are reproduced:
an EP0 stall is a PIPE error, a vanished device NO_DEVICE, a device that never answers TIMEOUT.
"""

from __future__ import annotations

import array
import errno
import threading
from dataclasses import dataclass
from typing import Any

import usb.backend
import usb.core

from station.sim.dfu_device import SimulatedDfuDevice, UsbGone, UsbNoAnswer, UsbSignal, UsbStalled
from station.sim.usb_descriptors import (
    ConfigurationDescriptor,
    DeviceDescriptor,
    configuration_of,
    device_descriptor_of,
)

_LIBUSB_ERROR_ACCESS = -3
_LIBUSB_ERROR_NO_DEVICE = -4
_LIBUSB_ERROR_BUSY = -6
_LIBUSB_ERROR_TIMEOUT = -7
_LIBUSB_ERROR_PIPE = -9


def _no_device() -> usb.core.USBError:
    return usb.core.USBError("No such device (it may have been disconnected)", _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)


def _translate(signal: UsbSignal) -> usb.core.USBError:
    if isinstance(signal, UsbStalled):
        return usb.core.USBError("Pipe error", _LIBUSB_ERROR_PIPE, errno.EPIPE)
    if isinstance(signal, UsbNoAnswer):
        return usb.core.USBTimeoutError("Operation timed out", _LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)
    assert isinstance(signal, UsbGone)
    return _no_device()


@dataclass(frozen=True)
class _Enumerated:
    """What the host saw at enumeration: a device at one address, with cached descriptors."""

    device: SimulatedDfuDevice
    generation: int
    descriptor: DeviceDescriptor
    configuration: ConfigurationDescriptor


class _Handle:
    def __init__(self, seen: _Enumerated) -> None:
        self.seen = seen
        self.open = True
        self.claimed: set[int] = set()


class SimulatedUsbBackend(usb.backend.IBackend):  # type: ignore[misc]
    """A USB bus of simulated devices. Thread-safe; each device serialises its own transfers."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._devices: list[SimulatedDfuDevice] = []
        self._addresses: dict[tuple[int, int], int] = {}  # (id(device), generation) -> address
        self._next_address: dict[int, int] = {}
        self._claims: dict[tuple[int, int, int], _Handle] = {}  # (id(device), generation, intf) -> owner

    # ---- hotplug

    def attach(self, device: SimulatedDfuDevice) -> SimulatedDfuDevice:
        """Plug ``device`` in (again: a re-plug power-cycles it; its flash keeps its contents)."""
        with self._lock:
            for other in self._devices:
                if other is not device and other.present and other.port_path == device.port_path:
                    raise ValueError(f"port {device.port_path} already holds a device")
            if device not in self._devices:
                self._devices.append(device)
        if device.present:
            device.unplug()
        device.power_up()
        return device

    def plug(
        self, platform: str, device_id: str | None = None, *, port_path: str | None = None, **options: Any
    ) -> SimulatedDfuDevice:
        """Make a ``SimulatedDfuDevice`` and attach it, on the next free root port ("1-1", "1-2", ...)
        unless ``port_path`` is given; ``options`` go to the device (timing, faults, mode, ...)."""
        if port_path is None:
            taken = {d.port_path for d in self.devices if d.present}
            port_path = next(f"1-{n}" for n in range(1, 128) if f"1-{n}" not in taken)
        return self.attach(SimulatedDfuDevice(platform, device_id, port_path=port_path, **options))

    def detach(self, device: SimulatedDfuDevice) -> None:
        """Unplug ``device``; open handles fail with NO_DEVICE from now on."""
        device.unplug()
        with self._lock:
            if device in self._devices:
                self._devices.remove(device)

    @property
    def devices(self) -> tuple[SimulatedDfuDevice, ...]:
        with self._lock:
            return tuple(self._devices)

    def device_at(self, port_path: str) -> SimulatedDfuDevice | None:
        with self._lock:
            return next((d for d in self._devices if d.port_path == port_path), None)

    def _address(self, device: SimulatedDfuDevice, generation: int) -> int:
        with self._lock:
            key = (id(device), generation)
            if key not in self._addresses:
                number = self._next_address.get(device.bus, 1) % 127 + 1
                self._next_address[device.bus] = number
                self._addresses[key] = number
            return self._addresses[key]

    # ---- enumeration and descriptors

    def enumerate_devices(self) -> list[_Enumerated]:
        seen = []
        for device in self.devices:
            device.tick()
            generation = device.generation
            if not device.present:
                continue
            address = self._address(device, generation)
            seen.append(
                _Enumerated(device, generation, device_descriptor_of(device, address), configuration_of(device))
            )
        return seen

    def get_parent(self, dev: _Enumerated) -> None:
        return None

    def get_device_descriptor(self, dev: _Enumerated) -> DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: _Enumerated, config: int) -> ConfigurationDescriptor:
        if config != 0:
            raise IndexError(f"Invalid configuration index {config}")
        return dev.configuration

    def get_interface_descriptor(self, dev: _Enumerated, intf: int, alt: int, config: int) -> Any:
        cfg = self.get_configuration_descriptor(dev, config)
        if intf >= len(cfg.interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        if alt >= len(cfg.interfaces[intf]):
            raise IndexError(f"Invalid alternate setting index {alt}")
        return cfg.interfaces[intf][alt]

    def get_endpoint_descriptor(self, dev: _Enumerated, ep: int, intf: int, alt: int, config: int) -> Any:
        interface = self.get_interface_descriptor(dev, intf, alt, config)
        if ep >= len(interface.endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return interface.endpoints[ep]

    # ---- handles

    def _live(self, handle: _Handle) -> SimulatedDfuDevice:
        device = handle.seen.device
        device.tick()
        if not handle.open or not device.present or device.generation != handle.seen.generation:
            raise _no_device()
        return device

    def open_device(self, dev: _Enumerated) -> _Handle:
        handle = _Handle(dev)
        device = self._live(handle)
        if device.access_denied:  # the device node belongs to root: no udev rule for it
            raise usb.core.USBError("Access denied (insufficient permissions)", _LIBUSB_ERROR_ACCESS, errno.EACCES)
        return handle

    def close_device(self, dev_handle: _Handle) -> None:
        with self._lock:
            for key in [k for k, owner in self._claims.items() if owner is dev_handle]:
                del self._claims[key]
        dev_handle.open = False

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._live(dev_handle)
        if config_value not in (0, 1):
            raise usb.core.USBError("Entity not found", -5, errno.ENOENT)

    def get_configuration(self, dev_handle: _Handle) -> int:
        self._live(dev_handle)
        return 1

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = self._live(dev_handle)
        with self._lock:
            key = (id(device), dev_handle.seen.generation, intf)
            owner = self._claims.get(key)
            if owner is not None and owner is not dev_handle and owner.open:
                raise usb.core.USBError("Resource busy", _LIBUSB_ERROR_BUSY, errno.EBUSY)
            self._claims[key] = dev_handle
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        device = dev_handle.seen.device
        with self._lock:
            key = (id(device), dev_handle.seen.generation, intf)
            if self._claims.get(key) is dev_handle:
                del self._claims[key]
        dev_handle.claimed.discard(intf)

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        device = self._live(dev_handle)
        try:
            device.set_alt_setting(intf, altsetting, dev_handle.seen.generation)
        except UsbSignal as signal:
            raise _translate(signal) from None

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        device = self._live(dev_handle)
        length = len(data) * data.itemsize
        payload: bytes | int = length if bmRequestType & 0x80 else data.tobytes()
        try:
            reply = device.control(
                bmRequestType, bRequest, wValue, wIndex, payload, timeout, dev_handle.seen.generation
            )
        except UsbSignal as signal:
            raise _translate(signal) from None
        if isinstance(reply, bytes):
            raw = reply[:length]
            view = memoryview(data).cast("B")
            view[: len(raw)] = raw
            return len(raw)
        return reply

    def reset_device(self, dev_handle: _Handle) -> None:
        device = self._live(dev_handle)
        device.reset_now()

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._live(dev_handle)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        self._live(dev_handle)
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._live(dev_handle)

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        self._live(dev_handle)
