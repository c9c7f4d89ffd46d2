"""USB descriptors of a simulated Particle device, as objects pyusb reads and as the bytes a host fetches.

DFU mode: one interface, one alternate setting per memory (class FE/01/02), each followed by the
DfuSe functional descriptor. Normal mode: CDC ACM (two interfaces) plus Particle's vendor
interface for control requests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from station.sim.dfu_device import SimulatedDfuDevice

DEVICE = struct.Struct("<BBHBBBBHHHBBBB")
CONFIGURATION = struct.Struct("<BBHBBBBB")
INTERFACE = struct.Struct("<BBBBBBBBB")
ENDPOINT = struct.Struct("<BBBBHB")
SPEED_FULL = 2

# CDC class-specific descriptors: header 1.10, call management, ACM capabilities, union 0 -> 1.
_CDC_FUNCTIONAL = bytes.fromhex("05240010010524010001042402020524060001")


@dataclass
class DeviceDescriptor:
    idVendor: int
    idProduct: int
    bcdDevice: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bus: int
    address: int
    port_numbers: tuple[int, ...]
    bLength: int = 18
    bDescriptorType: int = 1
    bcdUSB: int = 0x0200
    bMaxPacketSize0: int = 64
    iManufacturer: int = 1
    iProduct: int = 2
    iSerialNumber: int = 3
    bNumConfigurations: int = 1
    speed: int = SPEED_FULL

    @property
    def port_number(self) -> int:
        return self.port_numbers[-1]

    def pack(self) -> bytes:
        return DEVICE.pack(
            self.bLength,
            self.bDescriptorType,
            self.bcdUSB,
            self.bDeviceClass,
            self.bDeviceSubClass,
            self.bDeviceProtocol,
            self.bMaxPacketSize0,
            self.idVendor,
            self.idProduct,
            self.bcdDevice,
            self.iManufacturer,
            self.iProduct,
            self.iSerialNumber,
            self.bNumConfigurations,
        )


@dataclass
class EndpointDescriptor:
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int
    bLength: int = 7
    bDescriptorType: int = 5
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)

    def pack(self) -> bytes:
        return ENDPOINT.pack(
            self.bLength,
            self.bDescriptorType,
            self.bEndpointAddress,
            self.bmAttributes,
            self.wMaxPacketSize,
            self.bInterval,
        )


@dataclass
class InterfaceDescriptor:
    bInterfaceNumber: int
    bAlternateSetting: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    iInterface: int
    extra_descriptors: list[int] = field(default_factory=list)
    endpoints: list[EndpointDescriptor] = field(default_factory=list)
    bLength: int = 9
    bDescriptorType: int = 4

    @property
    def bNumEndpoints(self) -> int:
        return len(self.endpoints)

    def pack(self) -> bytes:
        head = INTERFACE.pack(
            self.bLength,
            self.bDescriptorType,
            self.bInterfaceNumber,
            self.bAlternateSetting,
            self.bNumEndpoints,
            self.bInterfaceClass,
            self.bInterfaceSubClass,
            self.bInterfaceProtocol,
            self.iInterface,
        )
        return head + bytes(self.extra_descriptors) + b"".join(e.pack() for e in self.endpoints)


@dataclass
class ConfigurationDescriptor:
    interfaces: list[list[InterfaceDescriptor]]  # by interface, then alternate setting
    iConfiguration: int = 4
    bLength: int = 9
    bDescriptorType: int = 2
    bConfigurationValue: int = 1
    bmAttributes: int = 0x80
    bMaxPower: int = 50
    extra_descriptors: list[int] = field(default_factory=list)

    @property
    def bNumInterfaces(self) -> int:
        return len(self.interfaces)

    @property
    def wTotalLength(self) -> int:
        return len(self.pack())

    def pack(self) -> bytes:
        body = b"".join(alt.pack() for alts in self.interfaces for alt in alts)
        head = CONFIGURATION.pack(
            self.bLength,
            self.bDescriptorType,
            self.bLength + len(body),
            self.bNumInterfaces,
            self.bConfigurationValue,
            self.iConfiguration,
            self.bmAttributes,
            self.bMaxPower,
        )
        return head + body


def device_descriptor_of(device: SimulatedDfuDevice, address: int) -> DeviceDescriptor:
    from station.sim.dfu_device import UsbMode

    dfu = device.usb_mode is UsbMode.DFU
    return DeviceDescriptor(
        idVendor=device.vid,
        idProduct=device.pid,
        bcdDevice=device.spec.bcd_device,
        bDeviceClass=0x00 if dfu else 0xEF,
        bDeviceSubClass=0x00 if dfu else 0x02,
        bDeviceProtocol=0x00 if dfu else 0x01,
        bus=device.bus,
        address=address,
        port_numbers=device.port_numbers,
    )


def configuration_of(device: SimulatedDfuDevice) -> ConfigurationDescriptor:
    from station.sim.dfu_device import FUNCTIONAL, STRING_FIRST_ALT, UsbMode

    if device.usb_mode is UsbMode.DFU:
        functional = list(FUNCTIONAL.pack())
        alts = [
            InterfaceDescriptor(0, alt, 0xFE, 0x01, 0x02, STRING_FIRST_ALT + alt, list(functional))
            for alt in range(len(device.spec.alts))
        ]
        return ConfigurationDescriptor([alts])
    comm = InterfaceDescriptor(
        0, 0, 0x02, 0x02, 0x01, 0, list(_CDC_FUNCTIONAL), [EndpointDescriptor(0x82, 0x03, 8, 255)]
    )
    data = InterfaceDescriptor(
        1, 0, 0x0A, 0x00, 0x00, 0, [], [EndpointDescriptor(0x81, 0x02, 64, 0), EndpointDescriptor(0x01, 0x02, 64, 0)]
    )
    vendor = InterfaceDescriptor(2, 0, 0xFF, 0xFF, 0xFF, 0)
    return ConfigurationDescriptor([[comm], [data], [vendor]], iConfiguration=0)


def device_descriptor(device: SimulatedDfuDevice) -> bytes:
    return device_descriptor_of(device, 0).pack()


def configuration_bytes(device: SimulatedDfuDevice) -> bytes:
    return configuration_of(device).pack()
