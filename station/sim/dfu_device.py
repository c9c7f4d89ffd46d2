"""A simulated Particle device on USB: the DFU/DfuSe bootloader, and the normal mode that can be sent into it.

Behaviour follows ``reference/dfu-dfuse.md``: descriptors and memory-map strings per platform, the
bootloader's state machine (work runs after the dfuDNBUSY status reply; errors stall and leave
dfuERROR), DfuSe commands with Particle's deviations, NOR flash, and after the leave request a reset
that checks each written module's CRC as the bootloader would and re-enumerates as what it now runs.

Fault units (``station.sim.faults``) count download data blocks received since the device was
plugged in, from 0: ``disconnect@N`` drops off the bus when block N arrives, ``refuse-block@N``
stalls it (and the same address for the rest of the session), ``error-status@N`` fails programming
it with errPROG, ``stall@N`` leaves the status request after it unanswered, ``corrupt-reply@N``
damages that status reply, ``slow-poll@N`` asks the host to wait 30 s before polling again.
"""

from __future__ import annotations

import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from station.protocols.dfu import (
    DFUSE_VERSION,
    DfuseCommand,
    FunctionalDescriptor,
    Request,
    State,
    Status,
    StatusReply,
)
from station.protocols.memory_map import MemoryMap, parse_memory_map
from station.protocols.particle_usb import (
    DFU_MODE_REQUEST,
    PARTICLE_BREQUEST,
    PARTICLE_VID,
    SYSTEM_VERSION_REQUEST,
    Platform,
    ServiceReply,
    ServiceStatus,
    ServiceType,
    platform_by_name,
)
from station.sim import usb_descriptors
from station.sim.faults import FaultKind, FaultPlan
from station.sim.nor_flash import NorFlash
from station.sim.timing import FlashSpec, LinkSpec, TimingModel

# ---------------------------------------------------------------------------- hardware facts

# USB full speed: 64-byte control packets, at most 13 control transactions per 1 ms frame
# (USB 2.0 §5.5.4), so 832 bytes/ms; each control transfer spans at least one frame.
USB_FULL_SPEED_CONTROL = LinkSpec(bytes_per_second=832_000.0, latency=0.001)

# STM32F205/F207 datasheet, "Flash memory programming", x32 parallelism (2.7-3.6 V), typical.
_STM32F2_WORD_PROGRAM = 16e-6
_STM32F2_ERASE = {16 * 1024: 0.25, 64 * 1024: 0.55, 128 * 1024: 1.0}
# nRF52840 product specification, NVMC: page erase 85 ms, 32-bit word write 41 us.
NRF52840_FLASH = FlashSpec(sector_erase=0.085, program_per_byte=41e-6 / 4)
# Typical SPI NOR (W25Q / MX25 class): 4 KiB sector erase 45 ms, 256-byte page program 0.7 ms.
SPI_NOR_FLASH = FlashSpec(sector_erase=0.045, program_per_byte=0.7e-3 / 256)


def _stm32f2_spec(page_size: int) -> FlashSpec:
    return FlashSpec(sector_erase=_STM32F2_ERASE.get(page_size, 1.0), program_per_byte=_STM32F2_WORD_PROGRAM / 4)


# Particle bootloader USB facts (same on every DFU platform).
FUNCTIONAL = FunctionalDescriptor(attributes=0x0B, detach_timeout_ms=255, transfer_size=4096, dfu_version=DFUSE_VERSION)
BOOTLOADER_XFER = 4096  # the device multiplies block numbers by its own constant
STRING_MANUFACTURER = 1
STRING_PRODUCT = 2
STRING_SERIAL = 3
STRING_CONFIGURATION = 4
STRING_INTERFACE = 5
STRING_FIRST_ALT = 6
STRING_ERROR = 10
STRING_MSFT = 0xEE
STRING_PROTECTION = 0xFA
SLOW_POLL_MS = 30_000
MODULE_PREFIX = struct.Struct("<IIBBHHBBBBHBBH")
USER_PART = 5

_GEN3_INTERNAL = "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka"
_GEN3_DCT = "@DCT Flash   /0x00000000/1*016Ke"


@dataclass(frozen=True)
class AltSpec:
    memory: str  # the memory-map string, byte for byte as the bootloader sends it
    kind: str  # "stm32f2", "nrf52840", "spi-nor", "dct"


@dataclass(frozen=True)
class PlatformSpec:
    platform: Platform
    alts: tuple[AltSpec, ...]
    bcd_device: int
    prefix_offsets: tuple[int, ...]  # where a module's prefix may sit, for the boot check
    system_version: str = "6.2.0"


def _gen2(name: str, *, serial_flash: bool = False) -> PlatformSpec:
    alts = [
        AltSpec("@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg", "stm32f2"),
        AltSpec("@DCT Flash   /0x00000000/01*016Kg", "stm32f2"),
    ]
    if serial_flash:
        alts.append(AltSpec("@Serial Flash   /0x00000000/256*004Kg", "spi-nor"))
    platform = platform_by_name(name)
    assert platform is not None
    # bcdDevice of the STM32F2 bootloader is not in the reference; 0x0200 is an assumption.
    return PlatformSpec(platform, tuple(alts), 0x0200, (0, 0x184), "2.3.1")


def _gen3(name: str, external_pages: int = 1024) -> PlatformSpec:
    platform = platform_by_name(name)
    assert platform is not None
    return PlatformSpec(
        platform,
        (
            AltSpec(_GEN3_INTERNAL, "nrf52840"),
            AltSpec(_GEN3_DCT, "dct"),
            AltSpec(f"@External Flash   /0x80000000/{external_pages}*004Kg", "spi-nor"),
        ),
        0x0251,
        (0, 0x200),
    )


def _rtl(name: str) -> PlatformSpec:
    platform = platform_by_name(name)
    assert platform is not None
    return PlatformSpec(
        platform,
        (AltSpec("@Internal Flash   /0x08000000/2048*004Kg", "spi-nor"), AltSpec(_GEN3_DCT, "dct")),
        0x0252,
        (0, 0x20),
    )


PLATFORM_SPECS: dict[str, PlatformSpec] = {
    spec.platform.name: spec
    for spec in (
        _gen2("photon"),
        _gen2("p1", serial_flash=True),
        _gen2("electron"),
        _gen3("argon"),
        _gen3("boron"),
        _gen3("xenon"),
        _gen3("asom"),  # the B-SoM's Gen3 map; its external flash size is not in the reference (1024 pages assumed)
        _gen3("bsom"),
        _gen3("b5som", 2048),
        _gen3("tracker", 2048),
        _gen3("esomx", 2048),
        _rtl("p2"),
        _rtl("msom"),
        _rtl("trackerm"),
    )
}


def _flash_spec(kind: str, page_size: int) -> FlashSpec:
    if kind == "stm32f2":
        return _stm32f2_spec(page_size)
    if kind == "nrf52840":
        return NRF52840_FLASH
    if kind == "dct":
        return NRF52840_FLASH
    return SPI_NOR_FLASH


# ---------------------------------------------------------------------------- reports


class RunMode(StrEnum):
    APPLICATION = "application"  # every module checked out: it runs the application
    SAFE_MODE = "safe-mode"  # the user part failed its check: Device OS runs without it
    DFU = "dfu"  # a system module failed: the bootloader stays in DFU mode


@dataclass(frozen=True)
class ModuleCheck:
    """One module the bootloader found where something was written, and whether it may run."""

    address: int
    function: int
    index: int
    platform_id: int
    version: int
    size: int
    crc_ok: bool
    platform_ok: bool

    @property
    def valid(self) -> bool:
        return self.crc_ok and self.platform_ok


@dataclass(frozen=True)
class RunReport:
    """What the device runs after its last reset."""

    mode: RunMode
    modules: tuple[ModuleCheck, ...] = ()
    unrecognised: tuple[int, ...] = ()  # written ranges that hold no module header


class _Placed(Protocol):
    """An image with its flash address (``FlashImage`` is one; this layer does not import it)."""

    @property
    def address(self) -> int: ...

    @property
    def data(self) -> bytes: ...


class UsbMode(StrEnum):
    DFU = "dfu"
    NORMAL = "normal"


# ---------------------------------------------------------------------------- signals to the backend


class UsbSignal(Exception):
    """Raised inside the simulator; the pyusb backend turns it into the matching libusb error."""


class UsbStalled(UsbSignal):
    """EP0 stall (LIBUSB_ERROR_PIPE)."""


class UsbGone(UsbSignal):
    """The device is not on the bus (LIBUSB_ERROR_NO_DEVICE)."""


class UsbNoAnswer(UsbSignal):
    """The device never completed the transfer (LIBUSB_ERROR_TIMEOUT)."""


# ---------------------------------------------------------------------------- the device

_PORT_PATH = re.compile(r"^(\d+)-(\d+(?:\.\d+)*)$")
_SEGMENT_TYPE = re.compile(r"(\d+\*\d+[BKM ]?)[a-g]")


@dataclass
class _Pending:
    """A DNLOAD accepted in the data stage and waiting for GETSTATUS to run."""

    value: int
    data: bytes
    unit: int | None  # data-block ordinal for fault injection; None for DfuSe commands


@dataclass
class _Session:
    """Bootloader RAM: reset by every power-up or re-enumeration."""

    state: State = State.DFU_IDLE
    status: Status = Status.OK
    alt: int = 0
    pointer: int = 0
    pending: _Pending | None = None
    error_string: int = 0  # iString of the last error (Particle: 10 = "Device is in protected mode")
    refused_addresses: set[tuple[int, int]] = field(default_factory=set)
    written: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    # normal-mode service requests: request id -> request type
    service: dict[int, int] = field(default_factory=dict)
    next_service_id: int = 1
    reset_to: UsbMode | None = None
    reset_at: float | None = None


class SimulatedDfuDevice:
    """One simulated Particle board on a USB port. Attach it to a ``SimulatedUsbBackend``.

    ``timing`` defaults to an enabled model (the simulator costs real time); unit tests pass
    ``TimingModel(enabled=False)``.
    """

    def __init__(
        self,
        platform: str,
        device_id: str | None = None,
        *,
        port_path: str,
        timing: TimingModel | None = None,
        faults: FaultPlan | None = None,
        mode: UsbMode | str = UsbMode.DFU,
        clock: Callable[[], float] = time.monotonic,
        reset_delay: float | None = None,
        protected: bool = False,
    ) -> None:
        spec = PLATFORM_SPECS.get(platform.lower())
        if spec is None:
            known = ", ".join(sorted(PLATFORM_SPECS))
            raise ValueError(f"unknown platform {platform!r}; simulated: {known}")
        if protected and spec.platform.generation == "gen2":
            raise ValueError(f"{platform} has no device protection (Gen3 and later only)")
        match = _PORT_PATH.match(port_path)
        if match is None:
            raise ValueError(f"port path {port_path!r} is not a USB location like '1-1.4'")
        if device_id is None:
            device_id = zlib.crc32(f"{platform}:{port_path}".encode()).to_bytes(4, "big").hex() * 3
        if not re.fullmatch(r"[0-9a-f]{24}", device_id):
            raise ValueError(f"device id {device_id!r} is not 24 lower-case hex digits")
        self.spec = spec
        self.device_id = device_id
        self.port_path = port_path
        self.bus = int(match.group(1))
        self.port_numbers = tuple(int(p) for p in match.group(2).split("."))
        self.timing = timing if timing is not None else TimingModel()
        self.faults = faults if faults is not None else FaultPlan()
        self._clock = clock
        self.reset_delay = reset_delay if reset_delay is not None else (0.5 if self.timing.enabled else 0.0)
        self.protected = protected
        # Device protection: the same strings with every segment erase-only ('b').
        self.memory_strings = tuple(_SEGMENT_TYPE.sub(r"\1b", a.memory) if protected else a.memory for a in spec.alts)
        self.memory: tuple[MemoryMap, ...] = tuple(parse_memory_map(a.memory) for a in spec.alts)
        self.flash: tuple[NorFlash, ...] = tuple(
            NorFlash(
                m.segments[0].start,
                m.segments[-1].end - m.segments[0].start,
                overwrite=not any(s.erasable for s in m.segments),
            )
            for m in self.memory
        )
        self._usb_mode = UsbMode(mode)
        self.present = False  # on the bus; the backend sets it when attached
        self.access_denied = False  # True: opening it fails as without a udev rule
        self.generation = 0  # bumped at every (re-)enumeration; stale handles then fail
        self.blocks_received = 0
        self._running: RunReport | None = None
        self.resets = 0
        self._session = _Session()
        self._owed: list[tuple[float, str]] = []
        self._lock = threading.RLock()

    # ---- identity

    @property
    def platform(self) -> Platform:
        return self.spec.platform

    @property
    def vid(self) -> int:
        return PARTICLE_VID

    @property
    def pid(self) -> int:
        return self.platform.dfu_pid if self._usb_mode is UsbMode.DFU else self.platform.normal_pid

    @property
    def state(self) -> State:
        self.tick()
        return self._session.state

    @property
    def usb_mode(self) -> UsbMode:
        """DFU bootloader or normal firmware, as the host would see it now."""
        self.tick()
        return self._usb_mode

    @property
    def running(self) -> RunReport | None:
        """What the device runs after its last reset out of DFU mode (None before the first)."""
        self.tick()
        return self._running

    def strings(self) -> dict[int, str]:
        name = self.platform.display
        table = {
            STRING_MANUFACTURER: "Particle",
            STRING_SERIAL: self.device_id,
        }
        if self._usb_mode is UsbMode.DFU:
            table[STRING_PRODUCT] = f"{name} DFU Mode"
            table[STRING_CONFIGURATION] = "DFU"
            table[STRING_INTERFACE] = "DFU"
            for alt, memory in enumerate(self.memory_strings):
                table[STRING_FIRST_ALT + alt] = memory
            table[STRING_ERROR] = "Device is in protected mode"
            if self.platform.generation != "gen2":
                table[STRING_MSFT] = "MSFT100"
                table[STRING_PROTECTION] = "sm=p" if self.protected else "sm=o"
        else:
            table[STRING_PRODUCT] = name
        return table

    # ---- plugging

    def power_up(self, mode: UsbMode | None = None) -> None:
        """(Re-)enumerate: a fresh bootloader or firmware session; flash keeps its contents."""
        with self._lock:
            if mode is not None:
                self._usb_mode = mode
            self._session = _Session()
            self.generation += 1
            self.present = True
            self.blocks_received = 0

    def unplug(self) -> None:
        with self._lock:
            self.present = False
            self.generation += 1

    def tick(self) -> None:
        """Apply a reset that has come due (the bootloader's countdown after manifestation)."""
        with self._lock:
            session = self._session
            if session.reset_at is not None and self._clock() >= session.reset_at:
                target = session.reset_to or UsbMode.NORMAL
                if self._usb_mode is UsbMode.DFU and target is UsbMode.NORMAL:
                    self._running = self._boot_check(session)
                    if self._running.mode is RunMode.DFU:
                        target = UsbMode.DFU
                self.resets += 1
                self.power_up(target)

    def reset_now(self) -> None:
        """A USB bus reset from the host: a manifesting bootloader boots the firmware now."""
        with self._lock:
            session = self._session
            if session.reset_at is None:
                manifesting = session.state in (State.DFU_MANIFEST, State.DFU_MANIFEST_WAIT_RESET)
                session.reset_to = UsbMode.NORMAL if manifesting else self._usb_mode
            session.reset_at = float("-inf")
            self.tick()

    def _schedule_reset(self, to: UsbMode) -> None:
        self._session.reset_to = to
        self._session.reset_at = self._clock() + self.reset_delay

    # ---- read-back for tests and the line

    def read(self, address: int, length: int, *, alt: int = 0) -> bytes:
        with self._lock:
            return self.flash[alt].read(address, length)

    def preload(self, address: int, data: bytes, *, alt: int = 0) -> None:
        """Put bytes in flash as if programmed long ago (NOR semantics apply)."""
        with self._lock:
            self.flash[alt].program(address, data)

    def lower_bound(self, images: Sequence[tuple[int, bytes] | _Placed], *, until_running: bool = False) -> float:
        """Least time the modelled hardware needs to erase, write, read back and leave for ``images``:
        ``(address, bytes)`` pairs, as the ESP simulator takes them, or anything with ``.address`` and
        ``.data`` (a ``FlashImage``).

        Every DfuSe host must at least: send each erase and the address as a command, and every
        block, each followed by two status requests (the first gets dfuDNBUSY and starts the work,
        the second sees dfuDNLOAD-IDLE: reference dfu-dfuse.md §6.1 steps 2-3); read every block
        back after setting the address; and send the leave request with one status request.
        Flash erase and program times add. ``until_running``: also the bootloader's countdown from
        leaving to the reset into the new firmware, which a host that waits to see it run sits out.
        """
        link = USB_FULL_SPEED_CONTROL
        command = link.cost(5 + 6 + 6, 3)  # DNLOAD of 5 command bytes, two 6-byte status replies
        total = link.cost(0 + 6, 2)  # leave + its status
        if until_running:
            total += self.reset_delay
        for image in images:
            address, data = image if isinstance(image, tuple) else (image.address, image.data)
            size = len(data)
            alt = self._alt_for(address, size)
            memory, kind = self.memory[alt], self.spec.alts[alt].kind
            pages = list(memory.pages(address, size))
            blocks = -(-size // FUNCTIONAL.transfer_size)
            for page, page_size in pages:
                segment = memory.segment_at(page)
                if segment is not None and segment.erasable:
                    total += command + _flash_spec(kind, page_size).erase_cost(1)
            total += command  # set address
            total += link.cost(size + 12 * blocks, 3 * blocks)
            total += _flash_spec(kind, pages[0][1] if pages else 4096).program_cost(size)
            total += command + link.cost(size, blocks)  # verify: set address, read back
        return total

    def _alt_for(self, address: int, length: int) -> int:
        for alt, memory in enumerate(self.memory):
            if memory.covers(address, length):
                return alt
        raise ValueError(f"{address:#x}+{length:#x} is in no memory of {self.platform.name}")

    # ---- USB entry points (called by the backend with the device lock free)

    def _charge(self, seconds: float, what: str) -> None:
        self._owed.append((seconds, what))

    def _pay(self) -> None:
        """Spend what the last transfer cost, outside the lock: the host thread waits, the bus does not."""
        with self._lock:
            owed, self._owed = self._owed, []
        for seconds, what in owed:
            self.timing.spend(seconds, what)

    def control(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: bytes | int,
        timeout_ms: int,
        generation: int,
    ) -> bytes | int:
        """One control transfer. ``data`` is the OUT payload, or the IN length; returns bytes for IN."""
        try:
            with self._lock:
                return self._control(request_type, request, value, index, data, timeout_ms, generation)
        finally:
            self._pay()

    def _control(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: bytes | int,
        timeout_ms: int,
        generation: int,
    ) -> bytes | int:
        self.tick()
        if not self.present or generation != self.generation:
            raise UsbGone()
        nbytes = data if isinstance(data, int) else len(data)
        self._charge(USB_FULL_SPEED_CONTROL.cost(8 + nbytes), "usb")
        kind = (request_type >> 5) & 3
        if kind == 0:
            return self._standard(request_type, request, value, index, data)
        if self._usb_mode is UsbMode.DFU and kind == 1 and (request_type & 0x1F) == 1:
            if index != 0:
                raise UsbStalled()
            if request_type & 0x80:
                assert isinstance(data, int)
                return self._dfu_in(request, value, data, timeout_ms)
            assert isinstance(data, bytes)
            self._dfu_out(request, value, data)
            return len(data)
        if self._usb_mode is UsbMode.NORMAL and kind == 2:
            return self._vendor(request_type, request, value, index, data)
        raise UsbStalled()

    def set_alt_setting(self, interface: int, alt: int, generation: int) -> None:
        try:
            self._set_alt_setting(interface, alt, generation)
        finally:
            self._pay()

    def _set_alt_setting(self, interface: int, alt: int, generation: int) -> None:
        with self._lock:
            self.tick()
            if not self.present or generation != self.generation:
                raise UsbGone()
            self._charge(USB_FULL_SPEED_CONTROL.cost(8), "usb")
            if self._usb_mode is not UsbMode.DFU or interface != 0 or not 0 <= alt < len(self.spec.alts):
                raise UsbStalled()
            self._session.alt = alt

    # ---- standard requests

    def _standard(self, request_type: int, request: int, value: int, index: int, data: bytes | int) -> bytes | int:
        if request == 0x06 and request_type == 0x80 and isinstance(data, int):  # GET_DESCRIPTOR
            kind, number = value >> 8, value & 0xFF
            if kind == 1:
                return usb_descriptors.device_descriptor(self)[:data]
            if kind == 2 and number == 0:
                return usb_descriptors.configuration_bytes(self)[:data]
            if kind == 3:
                if number == 0:
                    return bytes([4, 3, 0x09, 0x04])[:data]
                text = self.strings().get(number)
                if text is None:
                    raise UsbStalled()
                encoded = text.encode("utf-16-le")[:252]
                return (bytes([2 + len(encoded), 3]) + encoded)[:data]
            if kind == 0x21 and self._usb_mode is UsbMode.DFU:
                return FUNCTIONAL.pack()[:data]
            raise UsbStalled()
        if request == 0x00 and request_type & 0x80 and isinstance(data, int):  # GET_STATUS
            return b"\x00\x00"[:data]
        if request == 0x08 and isinstance(data, int):  # GET_CONFIGURATION
            return b"\x01"[:data]
        if request in (0x09, 0x0B) and not request_type & 0x80:  # SET_CONFIGURATION / SET_INTERFACE
            if request == 0x0B:
                self._set_alt_setting(index, value, self.generation)
            return 0
        raise UsbStalled()

    # ---- DFU class requests

    def _stall(self, status: Status = Status.ERR_UNKNOWN, error_string: int = 0) -> UsbStalled:
        self._session.state = State.DFU_ERROR
        self._session.status = status
        self._session.error_string = error_string
        self._session.pending = None
        return UsbStalled()

    def _dfu_out(self, request: int, value: int, data: bytes) -> None:
        session = self._session
        state = session.state
        if request == Request.DNLOAD:
            if state not in (State.DFU_IDLE, State.DFU_DNLOAD_IDLE):
                raise self._stall()
            if not data:
                session.state = State.DFU_MANIFEST_SYNC
                session.pending = None
                return
            if value == 1 or len(data) > BOOTLOADER_XFER:
                raise self._stall()
            unit: int | None = None
            if value >= 2:
                unit = self.blocks_received
                self.blocks_received += 1
                address = (value - 2) * BOOTLOADER_XFER + session.pointer
                if self.faults.take(FaultKind.DISCONNECT, unit):
                    self.unplug()
                    raise UsbGone()
                if (session.alt, address) in session.refused_addresses or self.faults.take(
                    FaultKind.REFUSE_BLOCK, unit
                ):
                    session.refused_addresses.add((session.alt, address))
                    raise self._stall(Status.ERR_STALLEDPKT)
            session.pending = _Pending(value, data, unit)
            session.state = State.DFU_DNLOAD_SYNC
            return
        if request == Request.CLRSTATUS:
            if state is not State.DFU_ERROR:
                raise self._stall()
            session.state = State.DFU_IDLE
            session.status = Status.OK
            return
        if request == Request.ABORT:
            if state not in (
                State.DFU_IDLE,
                State.DFU_DNLOAD_SYNC,
                State.DFU_DNLOAD_IDLE,
                State.DFU_MANIFEST_SYNC,
                State.DFU_UPLOAD_IDLE,
            ):
                raise self._stall()
            session.state = State.DFU_IDLE
            session.status = Status.OK
            session.pending = None
            return
        if request == Request.DETACH:
            # bitWillDetach: the bootloader drops off the bus and comes back in DFU mode.
            self._schedule_reset(UsbMode.DFU)
            return
        raise self._stall()

    def _dfu_in(self, request: int, value: int, length: int, timeout_ms: int) -> bytes:
        session = self._session
        state = session.state
        if request == Request.GETSTATUS:
            return self._get_status(timeout_ms)[:length]
        if request == Request.GETSTATE:
            if state in (State.DFU_DNBUSY, State.DFU_MANIFEST, State.DFU_MANIFEST_WAIT_RESET):
                raise self._stall()
            return bytes([state])[:length]
        if request == Request.UPLOAD:
            if state not in (State.DFU_IDLE, State.DFU_UPLOAD_IDLE) or value == 1:
                raise self._stall()
            if value == 0:
                session.state = State.DFU_UPLOAD_IDLE
                commands = [DfuseCommand.GET_COMMANDS, DfuseCommand.SET_ADDRESS, DfuseCommand.ERASE]
                if self.platform.generation != "gen2":
                    commands += [DfuseCommand.ENTER_SAFE_MODE, DfuseCommand.CLEAR_SECURITY_MODE_OVERRIDE]
                return bytes(commands)[:length]
            if length > BOOTLOADER_XFER:
                raise self._stall()
            if self.protected:
                raise self._stall(Status.ERR_VENDOR, STRING_ERROR)
            address = (value - 2) * BOOTLOADER_XFER + session.pointer
            memory, flash = self.memory[session.alt], self.flash[session.alt]
            segment = memory.segment_at(address)
            if segment is None:
                raise self._stall(Status.ERR_ADDRESS)
            if not segment.readable:
                raise self._stall(Status.ERR_VENDOR)
            count = min(length, flash.end - address)
            session.state = State.DFU_UPLOAD_IDLE
            return flash.read(address, count)
        raise self._stall()

    def _get_status(self, timeout_ms: int) -> bytes:
        session = self._session
        state = session.state
        pending = session.pending
        if state is State.DFU_DNLOAD_SYNC and pending is not None:
            unit = pending.unit
            if unit is not None and self.faults.take(FaultKind.STALL, unit):
                self._charge(timeout_ms / 1000.0, "timeout")
                raise UsbNoAnswer()
            poll = 0
            if unit is not None and self.faults.take(FaultKind.SLOW_POLL, unit):
                poll = SLOW_POLL_MS
            reply = StatusReply(Status.OK, poll, State.DFU_DNBUSY, 0).pack()
            if unit is not None and self.faults.take(FaultKind.CORRUPT_REPLY, unit):
                reply = bytes([reply[0] ^ 0x5A, reply[1], reply[2], reply[3], reply[4] ^ 0xF0, reply[5]])
            # The bootloader does the work once the status reply has gone out.
            session.pending = None
            session.state = State.DFU_DNBUSY
            self._execute(pending)
            return reply
        if state is State.DFU_MANIFEST_SYNC:
            reported = State.DFU_DNLOAD_IDLE if self.platform.generation == "gen2" else State.DFU_MANIFEST
            session.state = (
                State.DFU_MANIFEST if self.platform.generation == "gen2" else (State.DFU_MANIFEST_WAIT_RESET)
            )
            if session.reset_at is None:
                self._schedule_reset(UsbMode.NORMAL)
            return StatusReply(Status.OK, 0, reported, 0).pack()
        if state is State.DFU_MANIFEST:
            return StatusReply(Status.OK, 0, State.DFU_MANIFEST_WAIT_RESET, 0).pack()
        return StatusReply(session.status, 0, state, session.error_string if state is State.DFU_ERROR else 0).pack()

    def _fail(self, status: Status) -> None:
        self._session.state = State.DFU_ERROR
        self._session.status = status
        self._session.error_string = 0

    def _fail_protected(self) -> None:
        self._fail(Status.ERR_VENDOR)
        self._session.error_string = STRING_ERROR

    def _execute(self, pending: _Pending) -> None:
        session = self._session
        session.state = State.DFU_DNLOAD_IDLE
        if pending.value == 0:
            self._command(pending.data)
            return
        if self.protected:
            self._fail_protected()
            return
        address = (pending.value - 2) * BOOTLOADER_XFER + session.pointer
        memory, flash = self.memory[session.alt], self.flash[session.alt]
        if not memory.covers(address, len(pending.data)):
            self._fail(Status.ERR_ADDRESS)
            return
        segment = memory.segment_at(address)
        assert segment is not None
        if not segment.writable:
            self._fail(Status.ERR_WRITE)
            return
        if pending.unit is not None and self.faults.take(FaultKind.ERROR_STATUS, pending.unit):
            self._fail(Status.ERR_PROG)
            return
        kind = self.spec.alts[session.alt].kind
        self._charge(_flash_spec(kind, segment.page_size).program_cost(len(pending.data)), "program")
        flash.program(address, pending.data)
        self._note_written(session.alt, address, address + len(pending.data))

    def _note_written(self, alt: int, start: int, end: int) -> None:
        ranges = self._session.written.setdefault(alt, [])
        for i, (a, b) in enumerate(ranges):
            if start <= b and end >= a:
                ranges[i] = (min(a, start), max(b, end))
                break
        else:
            ranges.append((start, end))

    def _command(self, data: bytes) -> None:
        session = self._session
        command = data[0]
        if command == DfuseCommand.SET_ADDRESS:
            if len(data) != 5:
                self._fail(Status.ERR_UNKNOWN)
                return
            session.pointer = int.from_bytes(data[1:5], "little")
            return
        if command == DfuseCommand.ERASE:
            if len(data) == 1:  # mass erase: Particle refuses it
                self._fail(Status.ERR_TARGET)
                return
            if len(data) != 5:
                self._fail(Status.ERR_UNKNOWN)
                return
            if self.protected:
                self._fail_protected()
                return
            address = int.from_bytes(data[1:5], "little")
            memory = self.memory[session.alt]
            segment = memory.segment_at(address)
            if segment is None:
                self._fail(Status.ERR_ADDRESS)
                return
            if not segment.erasable:
                self._fail(Status.ERR_ERASE)
                return
            page = segment.page_start(address)
            kind = self.spec.alts[session.alt].kind
            self._charge(_flash_spec(kind, segment.page_size).erase_cost(1), "erase")
            self.flash[session.alt].erase(page, segment.page_size)
            return
        if command == DfuseCommand.ENTER_SAFE_MODE and self.platform.generation != "gen2":
            session.state = State.DFU_MANIFEST_SYNC
            return
        if command == DfuseCommand.CLEAR_SECURITY_MODE_OVERRIDE and self.platform.generation != "gen2":
            return
        if command == DfuseCommand.READ_UNPROTECT:
            self._fail(Status.ERR_UNKNOWN)
            return
        self._fail(Status.ERR_STALLEDPKT)

    # ---- the bootloader's check at reset

    def _boot_check(self, session: _Session) -> RunReport:
        checks: list[ModuleCheck] = []
        unrecognised: list[int] = []
        for start, end in sorted(session.written.get(0, [])):
            position = start
            while position < end:
                check = self._module_at(position)
                if check is None:
                    if position == start:
                        unrecognised.append(start)
                    break
                checks.append(check)
                position = check.address + check.size
        mode = RunMode.APPLICATION
        for check in checks:
            if not check.valid:
                if check.function == USER_PART and mode is RunMode.APPLICATION:
                    mode = RunMode.SAFE_MODE
                elif check.function != USER_PART:
                    mode = RunMode.DFU
        return RunReport(mode, tuple(checks), tuple(unrecognised))

    def _module_at(self, address: int) -> ModuleCheck | None:
        flash = self.flash[0]
        for offset in self.spec.prefix_offsets:
            at = address + offset
            if at + MODULE_PREFIX.size > flash.end:
                continue
            fields = MODULE_PREFIX.unpack(flash.read(at, MODULE_PREFIX.size))
            start, end, _reserved, _flags, version, platform_id, function, index = fields[:8]
            if start != address or end <= start or end + 4 > flash.end or function == 0:
                continue
            body = flash.read(start, end - start)
            stored = int.from_bytes(flash.read(end, 4), "big")
            return ModuleCheck(
                address=start,
                function=function,
                index=index,
                platform_id=platform_id,
                version=version,
                size=end - start + 4,
                crc_ok=zlib.crc32(body) == stored,
                platform_ok=platform_id == self.platform.platform_id,
            )
        return None

    # ---- normal mode: Particle vendor requests

    def _vendor(self, request_type: int, request: int, value: int, index: int, data: bytes | int) -> bytes | int:
        session = self._session
        if request_type == 0xC0 and isinstance(data, int):
            if request == ServiceType.INIT:
                if value != 0:  # payloads are not needed by any request this simulator serves
                    return ServiceReply(ServiceStatus.NO_MEMORY).pack()[:data]
                request_id = session.next_service_id
                session.next_service_id = request_id % 0xFFFF + 1
                session.service[request_id] = index
                return ServiceReply(ServiceStatus.OK, request_id=request_id).pack()[:data]
            if request == ServiceType.CHECK:
                kind = session.service.pop(index, None)
                if kind is None:
                    return ServiceReply(ServiceStatus.NOT_FOUND).pack()[:data]
                if kind == DFU_MODE_REQUEST:
                    self._schedule_reset(UsbMode.DFU)
                    return ServiceReply(ServiceStatus.OK, result=0).pack()[:data]
                return ServiceReply(ServiceStatus.OK, result=-120).pack()[:data]  # not supported
            if request == ServiceType.RESET:
                if index == 0:
                    session.service.clear()
                else:
                    session.service.pop(index, None)
                return ServiceReply(ServiceStatus.OK).pack()[:data]
            if request == PARTICLE_BREQUEST and index == SYSTEM_VERSION_REQUEST:
                return self.spec.system_version.encode()[:data]
        if request_type == 0x40 and request == PARTICLE_BREQUEST and index == DFU_MODE_REQUEST:
            self._schedule_reset(UsbMode.DFU)
            return 0
        raise UsbStalled()
