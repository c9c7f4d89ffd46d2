"""The interface every device family implements, and the typed values it passes around.

The line never needs to know which family a device is: it calls these methods in order and reads
these values. Progress goes to a callback given per call, never to a logger; nothing prints.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType


class Family(StrEnum):
    PARTICLE_DFU = "particle-dfu"
    PARTICLE_SERIAL = "particle-serial"
    ESP = "esp"


class Mode(StrEnum):
    """What the device is doing when discovery sees it."""

    DFU = "dfu"  # Particle bootloader in DFU mode: flashable over USB
    LISTENING = "listening"  # Particle listening mode on serial: flashable with YModem
    NORMAL = "normal"  # running its application: must be switched before flashing
    BOOTLOADER = "bootloader"  # ESP ROM loader / stub


class Phase(StrEnum):
    CONNECT = "connect"
    IDENTIFY = "identify"
    ERASE = "erase"
    WRITE = "write"
    VERIFY = "verify"
    RESTART = "restart"


@dataclass(frozen=True)
class DeviceDescription:
    """What discovery knows before talking to the device. ``port_path`` is the slot key."""

    family: Family
    port_path: str  # physical USB location such as "1-1.4", or "sim-3" for simulated devices
    mode: Mode
    vid: int | None = None
    pid: int | None = None
    usb_serial_number: str | None = None  # a USB descriptor string, not a serial port
    serial_port: str | None = None  # e.g. /dev/ttyACM0, socket://127.0.0.1:5000
    # Where the OS sees it when that differs from the slot: the USB port path of a simulated
    # bench's board ("1-3" for slot "sim-3"), or a serial port's "1-1.4:1.2".
    location: str | None = None


@dataclass(frozen=True)
class DeviceIdentity:
    """Who the device is. ``device_id``: Particle's 24 hex digits, or the ESP's MAC as 12 hex digits."""

    device_id: str
    platform: str  # Particle platform name ("photon", "argon", ...) or ESP chip name ("ESP32-S3")
    platform_id: int | None = None  # Particle platform id; None for ESP
    mac: str | None = None  # "aa:bb:cc:dd:ee:ff" where the device reports one
    firmware: str | None = None  # what the device reports it runs, where the protocol says


@dataclass(frozen=True)
class FlashImage:
    """One image to write, and where. ``address`` is the flash address of its first byte."""

    name: str
    data: bytes
    address: int
    kind: str = "user-part"  # bootloader, system-part, user-part, radio-stack, ncp, app, partition-table ...
    module_function: int | None = None  # Particle only
    module_index: int | None = None
    platform_id: int | None = None
    sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Progress:
    phase: Phase
    done: int
    total: int
    image: str | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class VerifyNote:
    """What ``verify`` has to say about how the images were checked, recorded with the attempt.

    ``verified`` False: nothing could be checked (an ESP in Secure Download Mode computes no MD5);
    a profile with ``verify = "required"`` fails such a board.
    """

    text: str
    verified: bool


def no_progress(_: Progress) -> None:
    """A progress callback that discards."""


class Device(ABC):
    """One attached device. Every wait inside has a timeout; failures raise ``DeviceError``."""

    @abstractmethod
    def describe(self) -> DeviceDescription: ...

    @abstractmethod
    def identify(self) -> DeviceIdentity: ...

    @abstractmethod
    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        """Write each image where it belongs, in the order given."""

    @abstractmethod
    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> VerifyNote | None:
        """Read back or hash what was written; raise ``VerifyMismatch`` naming image and address.

        Returns None, or a note when the check was made another way or could not be made."""

    @abstractmethod
    def restart(self) -> None:
        """Leave the loader and run the application. A reset that drops the link is success."""

    def running_firmware(self) -> str | None:
        """After restart, what the device reports it runs, where the protocol allows; else None."""
        return None

    def confirm(self, images: Sequence[FlashImage]) -> bool | None:
        """After restart: True when the device reports it runs ``images``, False when it reports
        something else, None when its protocol cannot tell (the line then trusts verify)."""
        return None

    def close(self) -> None:
        """Release the port or USB handle. Safe to call twice."""
        return None

    def __enter__(self) -> Device:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
