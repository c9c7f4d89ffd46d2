"""Particle's USB identity (vendor/product IDs per platform) and its vendor control-request protocol.

Normal-mode devices answer "service requests" on endpoint 0 (particle-usb ``usb-protocol.js``):
INIT announces a request type, CHECK polls until the device has a result. Request type 50
(DFU_MODE) makes the device reset into its DFU bootloader.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason
from station.protocols.dfu import ControlTransport

PARTICLE_VID = 0x2B04
CORE_VID = 0x1D50
CORE_DFU_PID = 0x607F
CORE_NORMAL_PID = 0x607D
DFU_PID_BASE = 0xD000
NORMAL_PID_BASE = 0xC000

VENDOR_IN = 0xC0  # device-to-host, vendor, device
VENDOR_OUT = 0x40
PARTICLE_BREQUEST = 0x50  # 'P': low-level vendor requests
SERVICE_MIN_WLENGTH = 64
DFU_MODE_REQUEST = 50
SYSTEM_VERSION_REQUEST = 30
START_DFU_FLASHER_SERIAL_SPEED = 14400  # opening the CDC port at this baud rate resets into DFU


@dataclass(frozen=True)
class Platform:
    """One Particle platform: its id, name, product name and USB generation."""

    platform_id: int
    name: str
    display: str  # as in the "<display> DFU Mode" USB product string
    generation: str  # "gen1" (Core, STM32F1), "gen2" (STM32F2), "gen3" (nRF52840), "rtl872x"

    @property
    def vid(self) -> int:
        return CORE_VID if self.platform_id == 0 else PARTICLE_VID

    @property
    def dfu_pid(self) -> int:
        return CORE_DFU_PID if self.platform_id == 0 else DFU_PID_BASE | self.platform_id

    @property
    def normal_pid(self) -> int:
        return CORE_NORMAL_PID if self.platform_id == 0 else NORMAL_PID_BASE | self.platform_id


CORE = Platform(0, "core", "Core", "gen1")
# Every platform @particle/device-constants 4.2.1 gives USB and DFU IDs (the table particle-usb
# builds its own from); tests/station/test_families.py compares the two when it is installed.
PLATFORMS: tuple[Platform, ...] = (
    CORE,
    Platform(6, "photon", "Photon", "gen2"),
    Platform(8, "p1", "P1", "gen2"),
    Platform(10, "electron", "Electron", "gen2"),
    Platform(12, "argon", "Argon", "gen3"),
    Platform(13, "boron", "Boron", "gen3"),
    Platform(14, "xenon", "Xenon", "gen3"),
    Platform(15, "esomx", "E-SoM-X", "gen3"),
    Platform(22, "asom", "A-SoM", "gen3"),  # not public
    Platform(23, "bsom", "B-SoM", "gen3"),
    Platform(24, "xsom", "X-SoM", "gen3"),  # not public
    Platform(25, "b5som", "B5-SoM", "gen3"),
    Platform(26, "tracker", "Tracker", "gen3"),
    Platform(28, "trackerm", "Tracker M", "rtl872x"),
    Platform(32, "p2", "P2", "rtl872x"),
    Platform(35, "msom", "M-SoM", "rtl872x"),
    Platform(37, "electron2", "Electron 2", "gen3"),
    Platform(38, "sulu", "Sulu", "rtl872x"),
)
_BY_ID = {p.platform_id: p for p in PLATFORMS}
_BY_NAME = {p.name: p for p in PLATFORMS}


def platform_by_id(platform_id: int) -> Platform | None:
    return _BY_ID.get(platform_id)


def platform_by_name(name: str) -> Platform | None:
    return _BY_NAME.get(name.lower())


def platform_for_usb(vid: int, pid: int) -> tuple[Platform, bool] | None:
    """``(platform, in_dfu_mode)`` for a USB vendor/product pair, or None if it is not a known Particle."""
    if vid == CORE_VID and pid in (CORE_DFU_PID, CORE_NORMAL_PID):
        return CORE, pid == CORE_DFU_PID
    if vid != PARTICLE_VID:
        return None
    platform = _BY_ID.get(pid & 0xFF)
    if platform is None or platform is CORE or pid & 0xFF00 not in (DFU_PID_BASE, NORMAL_PID_BASE):
        return None
    return platform, pid & 0xFF00 == DFU_PID_BASE


def device_id_from_serial(serial: str) -> str | None:
    """The 24-hex-digit device ID in a USB serial-number string (particle-cli's rule), lower case."""
    printable = "".join(ch for ch in serial if ch.isprintable()).strip().lower()
    for start in range(0, max(0, len(printable) - 23)):
        chunk = printable[start : start + 24]
        if all(c in "0123456789abcdef" for c in chunk):
            return chunk
    return None


# --------------------------------------------------------------------------- service requests


class ServiceType(IntEnum):
    INIT = 1
    CHECK = 2
    SEND = 3
    RECV = 4
    RESET = 5


class ServiceStatus(IntEnum):
    OK = 0
    ERROR = 1
    PENDING = 2
    BUSY = 3
    NO_MEMORY = 4
    NOT_FOUND = 5


FLAG_STATUS = 0x01
FLAG_ID = 0x02
FLAG_SIZE = 0x04
FLAG_RESULT = 0x08
_FLAGS = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


@dataclass(frozen=True)
class ServiceReply:
    status: int
    request_id: int | None = None
    size: int | None = None
    result: int | None = None

    def pack(self) -> bytes:
        flags = FLAG_STATUS
        body = _U16.pack(self.status)
        if self.request_id is not None:
            flags |= FLAG_ID
            body += _U16.pack(self.request_id)
        if self.size is not None:
            flags |= FLAG_SIZE
            body += _U32.pack(self.size)
        if self.result is not None:
            flags |= FLAG_RESULT
            body += _I32.pack(self.result)
        return _FLAGS.pack(flags) + body

    @classmethod
    def parse(cls, data: bytes) -> ServiceReply:
        try:
            (flags,) = _FLAGS.unpack_from(data, 0)
            if not flags & FLAG_STATUS:
                raise ValueError("no status field")
            (status,) = _U16.unpack_from(data, 4)
            offset = 6
            request_id = size = result = None
            if flags & FLAG_ID:
                (request_id,) = _U16.unpack_from(data, offset)
                offset += 2
            if flags & FLAG_SIZE:
                (size,) = _U32.unpack_from(data, offset)
                offset += 4
            if flags & FLAG_RESULT:
                (result,) = _I32.unpack_from(data, offset)
        except (struct.error, ValueError) as exc:
            raise DeviceError(f"malformed service reply {data.hex()}: {exc}") from None
        return cls(status, request_id, size, result)


# particle-usb's CHECK back-off, in seconds.
_CHECK_INTERVALS = (0.05, 0.05, 0.1, 0.1, 0.25, 0.25, 0.5, 0.5, 1.0)


def send_service_request(
    transport: ControlTransport,
    request_type: int,
    *,
    device: str | None = None,
    timeout: float = 5.0,
    control_timeout_ms: int = 5000,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    reset_ok: bool = False,
) -> int:
    """Send a payload-less request (INIT, then CHECK until done); its result code.

    With ``reset_ok`` a device that drops off the bus once the request is accepted has done what
    was asked (DFU_MODE, RESET): that is a result of 0.
    """
    deadline = clock() + timeout
    init = transport.control_in(VENDOR_IN, ServiceType.INIT, 0, request_type, SERVICE_MIN_WLENGTH, control_timeout_ms)
    reply = ServiceReply.parse(init)
    if reply.status != ServiceStatus.OK or reply.request_id is None:
        raise DeviceError(
            f"device refused control request {request_type} (service status {reply.status})",
            device=device,
            reason=Reason.REFUSED,
        )
    attempt = 0
    while True:
        sleep(_CHECK_INTERVALS[min(attempt, len(_CHECK_INTERVALS) - 1)])
        attempt += 1
        try:
            data = transport.control_in(
                VENDOR_IN, ServiceType.CHECK, 0, reply.request_id, SERVICE_MIN_WLENGTH, control_timeout_ms
            )
        except DeviceDisconnected:
            if reset_ok:
                return 0
            raise
        check = ServiceReply.parse(data)
        if check.status == ServiceStatus.OK:
            return check.result or 0
        if check.status != ServiceStatus.PENDING:
            raise DeviceError(
                f"control request {request_type} failed (service status {check.status})",
                device=device,
                reason=Reason.DEVICE_STATUS,
            )
        if clock() > deadline:
            raise DeviceTimeout(f"control request {request_type} still pending after {timeout:.0f} s", device=device)
