"""A second, independent simulated DFU device and pyusb backend, to check the station's DFU code.

Written from reference/dfu-dfuse.md alone (§3.3 state table, §6 DfuSe, §7 memory map, §9.2
strings), sharing no code with ``station.sim``: if the station's client and the project's simulator
misread the reference the same way, this device still disagrees. It records every request so a test
can check the exact sequence a host sends. A Boron (Gen3) in DFU mode, alt 0 internal flash only.
"""

from __future__ import annotations

import array
import errno
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core

VID, PID = 0x2B04, 0xD00D  # Boron in DFU mode
DEVICE_ID = "e00fce68ffffffffffffffff"
XFER = 4096
INTERNAL = "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka"
DCT = "@DCT Flash   /0x00000000/1*016Ke"
STRINGS = {1: "Particle", 2: "Boron DFU Mode", 3: DEVICE_ID, 4: "DFU", 5: "DFU", 6: INTERNAL, 7: DCT}
FLASH_SIZE = 0x100000
PAGE = 0x1000
# Alt 0's 'g' segments (read, erase, write): after the read-only MBR page, 47 + 192 + 4 + 4 pages.
WRITABLE = (0x1000, 0xF8000)

IDLE, DNLOAD_SYNC, DNBUSY, DNLOAD_IDLE, MANIFEST_SYNC, MANIFEST, WAIT_RESET, UPLOAD_IDLE, ERROR = range(2, 11)


class Stall(Exception):
    pass


@dataclass
class IndependentBoron:
    """The bootloader as the reference's §3.3 table describes it; flash is NOR (program = AND)."""

    flash: bytearray = field(default_factory=lambda: bytearray(b"\xff" * FLASH_SIZE))
    state: int = IDLE
    status: int = 0
    pointer: int = 0
    alt: int = 0
    pending: tuple[int, bytes] | None = None
    log: list[tuple[str, int, int]] = field(default_factory=list)  # (request, wValue, length or payload[0])
    erased: list[int] = field(default_factory=list)
    reset_into_firmware: bool = False

    def _error(self, status: int) -> Stall:
        self.state, self.status, self.pending = ERROR, status, None
        return Stall()

    def out(self, request: int, value: int, data: bytes) -> None:
        if request == 1:  # DNLOAD
            self.log.append(("DNLOAD", value, len(data)))
            if self.state not in (IDLE, DNLOAD_IDLE):
                raise self._error(0x0E)
            if not data:
                self.state = MANIFEST_SYNC
                return
            if value == 1 or len(data) > XFER:
                raise self._error(0x0E)
            self.pending = (value, bytes(data))
            self.state = DNLOAD_SYNC
        elif request == 4:  # CLRSTATUS
            self.log.append(("CLRSTATUS", 0, 0))
            if self.state != ERROR:
                raise self._error(0x0E)
            self.state, self.status = IDLE, 0
        elif request == 6:  # ABORT
            self.log.append(("ABORT", 0, 0))
            if self.state not in (IDLE, DNLOAD_SYNC, DNLOAD_IDLE, MANIFEST_SYNC, UPLOAD_IDLE):
                raise self._error(0x0E)
            self.state, self.status, self.pending = IDLE, 0, None
        else:
            raise self._error(0x0E)

    def into(self, request: int, value: int, length: int) -> bytes:
        if request == 3:  # GETSTATUS
            self.log.append(("GETSTATUS", 0, self.state))
            if self.state == DNLOAD_SYNC:
                reply = bytes([0, 0, 0, 0, DNBUSY, 0])
                assert self.pending is not None
                self._execute(*self.pending)  # after the reply goes out, as the bootloader does
                self.pending = None
                return reply
            if self.state == MANIFEST_SYNC:
                self.state = WAIT_RESET
                self.reset_into_firmware = True
                return bytes([0, 0, 0, 0, MANIFEST, 0])
            return bytes([self.status, 0, 0, 0, self.state, 0])
        if request == 5:  # GETSTATE
            return bytes([self.state])
        if request == 2:  # UPLOAD
            self.log.append(("UPLOAD", value, length))
            if self.state not in (IDLE, UPLOAD_IDLE) or value < 2 or length > XFER:
                raise self._error(0x0E)
            address = (value - 2) * XFER + self.pointer
            self.state = UPLOAD_IDLE
            return bytes(self.flash[address : address + length])
        raise self._error(0x0E)

    def _execute(self, value: int, data: bytes) -> None:
        self.state = DNLOAD_IDLE
        if value == 0:
            command, address = data[0], int.from_bytes(data[1:5], "little")
            if command == 0x21 and len(data) == 5:
                self.pointer = address
            elif command == 0x41 and len(data) == 5 and WRITABLE[0] <= address < WRITABLE[1]:
                page = address - address % PAGE
                self.erased.append(page)
                self.flash[page : page + PAGE] = b"\xff" * PAGE
            else:
                self.state, self.status = ERROR, 0x0E
            return
        address = (value - 2) * XFER + self.pointer
        if not (WRITABLE[0] <= address and address + len(data) <= WRITABLE[1]):
            self.state, self.status = ERROR, 0x08
            return
        for i, byte in enumerate(data):
            self.flash[address + i] &= byte


def _interface(alt: int) -> SimpleNamespace:
    functional = [9, 0x21, 0x0B, 0xFF, 0x00, XFER & 0xFF, XFER >> 8, 0x1A, 0x01]
    return SimpleNamespace(
        bLength=9,
        bDescriptorType=4,
        bInterfaceNumber=0,
        bAlternateSetting=alt,
        bNumEndpoints=0,
        bInterfaceClass=0xFE,
        bInterfaceSubClass=0x01,
        bInterfaceProtocol=0x02,
        iInterface=6 + alt,
        extra_descriptors=functional,
    )


class IndependentBackend(usb.backend.IBackend):  # type: ignore[misc]
    """One Boron on bus 1, port 4; USB errors as libusb reports them (PIPE for a stall)."""

    def __init__(self, device: IndependentBoron) -> None:
        super().__init__()
        self.device = device
        self.descriptor = SimpleNamespace(
            bLength=18,
            bDescriptorType=1,
            bcdUSB=0x0200,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=64,
            idVendor=VID,
            idProduct=PID,
            bcdDevice=0x0251,
            iManufacturer=1,
            iProduct=2,
            iSerialNumber=3,
            bNumConfigurations=1,
            address=7,
            bus=1,
            port_number=4,
            port_numbers=(4,),
            speed=2,
        )
        self.interfaces = [_interface(0), _interface(1)]
        self.configuration = SimpleNamespace(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=9 + 2 * 18,
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=4,
            bmAttributes=0x80,
            bMaxPower=50,
            extra_descriptors=[],
        )

    def enumerate_devices(self) -> list[str]:
        return [] if self.device.reset_into_firmware else ["boron"]

    def get_device_descriptor(self, dev: str) -> Any:
        return self.descriptor

    def get_configuration_descriptor(self, dev: str, config: int) -> Any:
        return self.configuration

    def get_interface_descriptor(self, dev: str, intf: int, alt: int, config: int) -> Any:
        if intf != 0 or alt >= len(self.interfaces):
            raise IndexError(alt)
        return self.interfaces[alt]

    def open_device(self, dev: str) -> str:
        return dev

    def close_device(self, handle: str) -> None:
        return None

    def set_configuration(self, handle: str, value: int) -> None:
        return None

    def get_configuration(self, handle: str) -> int:
        return 1

    def claim_interface(self, handle: str, intf: int) -> None:
        return None

    def release_interface(self, handle: str, intf: int) -> None:
        return None

    def set_interface_altsetting(self, handle: str, intf: int, alt: int) -> None:
        self.device.alt = alt
        self.device.log.append(("SET_INTERFACE", alt, 0))

    def ctrl_transfer(
        self, handle: str, request_type: int, request: int, value: int, index: int, data: array.array[int], timeout: int
    ) -> int:
        if self.device.reset_into_firmware:
            raise usb.core.USBError("No such device", -4, errno.ENODEV)
        length = len(data) * data.itemsize
        try:
            if request_type == 0x80 and request == 6 and value >> 8 == 3:  # GET_DESCRIPTOR(string)
                number = value & 0xFF
                text = b"\x09\x04" if number == 0 else STRINGS[number].encode("utf-16-le")
                reply = bytes([2 + len(text), 3]) + text
            elif request_type == 0xA1:
                reply = self.device.into(request, value, length)
            elif request_type == 0x21:
                self.device.out(request, value, data.tobytes())
                return length
            else:
                raise Stall()
        except (Stall, KeyError):
            raise usb.core.USBError("Pipe error", -9, errno.EPIPE) from None
        raw = reply[:length]
        memoryview(data).cast("B")[: len(raw)] = raw
        return len(raw)
