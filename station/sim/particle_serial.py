"""A simulated Particle device in listening mode on a pseudo-terminal, for tests, benchmarks and people.

It answers the listening-mode keys byte for byte as Device OS 5.x does (system_setup.cpp,
system_info.cpp), receives YModem as system_ymodem.cpp does, validates the module as Device OS
would before accepting it (CRC-32, platform, size), installs it, and reports it in ``s``
afterwards. Line-coding changes act as on hardware: 14400 baud reboots into DFU (the pty goes
away), 28800 enters listening mode.

Timing: the link is USB CDC (the baud rate is only a signal) or, with ``uart=True``, a UART at
the port's current baud rate; flash costs are the OTA store's (STM32F2 sectors on Gen2, SPI NOR
on Gen3 and P2), then the bootloader's copy on restart.

Faults (``FaultPlan``), counted in YModem packets (0 = header, 1..n = data, n+1 = EOT,
n+2 = end-of-batch): ``disconnect`` (the port vanishes; the board comes back on a new pty),
``stall`` (silence until the host gives up), ``corrupt-reply`` (the ACK arrives damaged),
``refuse-block`` (NAK every time, this transfer), ``error-status`` (the write fails: CAN CAN),
``slow-poll`` (the answer comes late, by ``slow_reply`` seconds).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import os
import secrets
import select
import threading
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from firmware_tools.errors import FirmwareError
from firmware_tools.particle import ModuleFunction, parse_module
from station.protocols import listening
from station.protocols.ymodem import FileHeader, Outcome, Verdict, YModemReceiver
from station.sim.faults import FaultKind, FaultPlan
from station.sim.timing import FlashSpec, LinkSpec, TimingModel

# struct termios2 read as ints: c_ispeed, c_ospeed sit at int 9 and 10 (asm-generic/termbits.h).
_TCGETS2 = 0x802C542A
_TERMIOS2_INTS = 64
_OSPEED_INDEX = 10

# system_ymodem.h
_NAK_TIMEOUT = 5.0
# Device OS error codes reported by "Validation failed: <code>" (services/inc/system_error.h).
_ERROR_INTEGRITY = -1330  # SYSTEM_ERROR_OTA_INTEGRITY_CHECK_FAILED
_ERROR_INVALID_SIZE = -1351  # SYSTEM_ERROR_OTA_INVALID_SIZE
_ERROR_INVALID_PLATFORM = -1360  # SYSTEM_ERROR_OTA_INVALID_PLATFORM
_ERROR_UNSUPPORTED_MODULE = -1310  # SYSTEM_ERROR_OTA_UNSUPPORTED_MODULE
_ERROR_INVALID_FORMAT = -1370  # SYSTEM_ERROR_OTA_INVALID_FORMAT

_VALID_CHECKS = 30  # vc/vv: integrity, dependencies, range, platform checked and passed

# USB full-speed CDC: stop-and-wait YModem pays about one frame each way per packet.
USB_CDC = LinkSpec(bytes_per_second=800_000.0, latency=0.002)
# Datasheet typical values. STM32F2: 128 KiB sectors, 1 s erase, 16 us per 32-bit word (x32).
STM32F2_FLASH = FlashSpec(sector_erase=1.0, program_per_byte=4e-6)
# Gen3/RTL OTA goes to external SPI NOR (MX25 class): 4 KiB sector 40 ms, page program ~0.6 ms/256 B.
SPI_NOR_FLASH = FlashSpec(sector_erase=0.040, program_per_byte=2.4e-6)
_UART_TURNAROUND = 0.0005  # a UART has no frames: only the peers' reaction time
_RESTART_DELAY = 1.0  # Device OS waits 1 s after "Downloaded file successfully!"
_BOOT_TIME = 0.5


class _HasData(Protocol):
    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True)
class Slot:
    function: int
    index: int
    max_size: int
    version: int
    factory: bool = True  # holds a module when the board leaves the factory


@dataclass(frozen=True)
class SimPlatform:
    name: str
    platform_id: int
    system_version: str
    slots: tuple[Slot, ...]
    flash: FlashSpec
    erase_unit: int
    cellular: bool = False
    wifi: bool = False

    def slot(self, function: int, index: int) -> Slot | None:
        return next((s for s in self.slots if s.function == function and s.index == index), None)

    @property
    def ota_max(self) -> int:
        return max(s.max_size for s in self.slots)


_B, _S, _U = int(ModuleFunction.BOOTLOADER), int(ModuleFunction.SYSTEM_PART), int(ModuleFunction.USER_PART)


def _gen2(name: str, pid: int, *, cellular: bool = False) -> SimPlatform:
    system = [Slot(_S, 1, 262144, 2300), Slot(_S, 2, 262144, 2300)]
    if cellular:
        system = [Slot(_S, 1, 131072, 2300), Slot(_S, 2, 131072, 2300), Slot(_S, 3, 131072, 2300)]
    return SimPlatform(
        name,
        pid,
        "2.3.0",
        (Slot(_B, 0, 16384, 1200), *system, Slot(_U, 1, 131072, 6)),
        STM32F2_FLASH,
        128 * 1024,
        cellular=cellular,
        wifi=not cellular,
    )


def _gen3(name: str, pid: int, *, cellular: bool = False) -> SimPlatform:
    # Two user-part slots: the 256 KB part (index 2) and the 128 KB compat part at 0xD4000 (index 1)
    # that Device OS still accepts (particle-cli erases it before writing a new 256 KB app).
    return SimPlatform(
        name,
        pid,
        "5.8.0",
        (
            Slot(_B, 0, 49152, 2200),
            Slot(_S, 1, 573440, 5800),
            Slot(_U, 2, 262144, 6),
            Slot(_U, 1, 131072, 6, factory=False),
        ),
        SPI_NOR_FLASH,
        4096,
        cellular=cellular,
        wifi=not cellular,
    )


PLATFORMS: dict[str, SimPlatform] = {
    p.name: p
    for p in (
        _gen2("photon", 6),
        _gen2("p1", 8),
        _gen2("electron", 10, cellular=True),
        _gen3("argon", 12),
        _gen3("boron", 13, cellular=True),
        SimPlatform(
            "p2",
            32,
            "5.8.0",
            (Slot(_B, 0, 65536, 3000), Slot(_S, 1, 1572864, 5800), Slot(_U, 1, 1572864, 6)),
            SPI_NOR_FLASH,
            4096,
            wifi=True,
        ),
    )
}


@dataclass(frozen=True)
class InstalledModule:
    """A module the simulated device holds; ``data`` is None for the factory-loaded ones."""

    function: int
    index: int
    version: int
    platform_id: int
    sha256: bytes  # the suffix SHA the module carries, what Device OS reports as "u"
    dependencies: tuple[tuple[int, int, int], ...]
    data: bytes | None = None


@dataclass(frozen=True)
class TransferRecord:
    name: str
    size: int
    received: int
    outcome: str
    message: str


class Mode(StrEnum):
    LISTENING = "listening"
    NORMAL = "normal"  # running the application: console keys do nothing
    YMODEM = "ymodem"
    STALLED = "stalled"
    GONE = "gone"  # unplugged, or rebooted into DFU


@dataclass
class _Transfer:
    header: FileHeader | None = None
    buffer: bytearray = field(default_factory=bytearray)
    refuse_packet: int | None = None


_SHORT_PACKET = 3 + 128 + 2
_LONG_PACKET = 3 + 1024 + 2


def data_packet_sizes(size: int) -> list[int]:
    """Wire sizes of the data packets our sender uses: 1024-byte blocks, a last piece of <= 128 in 128."""
    full, rest = divmod(size, 1024)
    tail = [] if rest == 0 else [_SHORT_PACKET if rest <= 128 else _LONG_PACKET]
    return [_LONG_PACKET] * full + tail


def ymodem_cost(size: int, link: LinkSpec) -> float:
    """Link time of a YModem batch of one file: header (ACK C), data (ACK), EOT (ACK), end (ACK)."""
    data = sum(link.cost(n + 1) for n in data_packet_sizes(size))
    return link.cost(_SHORT_PACKET + 2) + data + link.cost(1 + 1) + link.cost(_SHORT_PACKET + 1)


class SimulatedSerialDevice:
    """One simulated board. ``start()`` opens the pty and returns its /dev/pts path."""

    def __init__(
        self,
        platform: str = "photon",
        device_id: str | None = None,
        *,
        timing: TimingModel | None = None,
        faults: FaultPlan | None = None,
        listening: bool = True,
        listen_after_reset: bool = True,
        system_version: str | None = None,
        nak_timeout: float = _NAK_TIMEOUT,
        slow_reply: float = 0.5,
        stall_recover: float = 1.0,
        link: Path | str | None = None,
        mac: str | None = None,
        uart: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if platform not in PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
        self.platform = PLATFORMS[platform]
        self.device_id = (device_id or secrets.token_hex(12)).lower()
        if len(self.device_id) != 24 or any(c not in "0123456789abcdef" for c in self.device_id):
            raise ValueError(f"device ID {device_id!r} is not 24 hex digits")
        # Timed like the hardware unless told otherwise; unit tests pass TimingModel(enabled=False).
        self.timing = timing if timing is not None else TimingModel()
        self.faults = faults or FaultPlan()
        self.mac = mac or ":".join(self.device_id[i : i + 2] for i in range(12, 24, 2))
        self._listen_after_reset = listen_after_reset
        self._uart = uart
        # Device OS 6 removed YModem: its 'f' prints the prompt, then four CANs and a refusal.
        self.system_version = system_version or self.platform.system_version
        major = self.system_version.split(".", 1)[0]
        self._ymodem_supported = not (major.isdigit() and int(major) >= 6)
        self._nak_timeout = nak_timeout
        self._slow_reply = slow_reply
        self._stall_recover = stall_recover
        self._link = Path(link) if link else None
        self._lock = threading.Lock()
        self._life = threading.Lock()  # start and stop, one at a time
        self._mode = Mode.LISTENING if listening else Mode.NORMAL
        self._exited = False  # 'x' was typed: a 28800 already set does not count again
        self._modules: dict[tuple[int, int], InstalledModule] = {
            (s.function, s.index): InstalledModule(
                s.function, s.index, s.version, self.platform.platform_id, hashlib.sha256(b"factory").digest(), ()
            )
            for s in self.platform.slots
            if s.factory
        }
        self.transfers: list[TransferRecord] = []
        self.entered_dfu = threading.Event()
        self._master = -1
        self._slave = -1
        self._path = ""
        self._thread: threading.Thread | None = None
        self._power_cycles = 0  # bumped by stop(): a pending re-plug from before it is void
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._receiver: YModemReceiver | None = None
        self._transfer = _Transfer()
        self._last_rx = 0.0
        self._corrupt_next_reply = False
        self._clock = clock
        self._sleep = sleep

    # -- public -----------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The /dev/pts path the host opens now (it changes when the board is re-plugged)."""
        return self._path

    @property
    def mode(self) -> Mode:
        return self._mode

    def start(self) -> str:
        """Plug the board in: a pty appears, the board boots. After ``stop`` this is a re-plug: same
        device ID and installed modules, a new pty, listening mode, no transfer in progress."""
        with self._life:  # a stop still running in another thread (an unplug) finishes first
            return self._start()

    def _start(self) -> str:
        if self._thread is not None:
            return self._path
        if self._stop.is_set():
            self._stop.clear()
            if self._receiver is not None:
                self._end_transfer("disconnected", "unplugged")
            self._exited = False
            self._mode = Mode.LISTENING
        self._wake_r, self._wake_w = os.pipe()
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name=f"sim-particle-serial-{self.device_id}", daemon=True)
        self._thread.start()
        return self._path

    def stop(self) -> None:
        with self._life:
            self._stop_now()

    def _stop_now(self) -> None:
        self._stop.set()
        # A re-plug still pending from a disconnect fault belongs to this power cycle: it must not
        # open a pty after this stop, nor after a later start.
        self._power_cycles += 1
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> SimulatedSerialDevice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def modules(self) -> tuple[InstalledModule, ...]:
        with self._lock:
            return tuple(self._modules.values())

    def installed(self, function: int, index: int) -> bytes | None:
        """The bytes of the module installed over YModem in that slot, or None if none was."""
        with self._lock:
            module = self._modules.get((function, index))
            return None if module is None else module.data

    def lower_bound(self, images: Sequence[bytes | _HasData]) -> float:
        """The least time the modelled hardware needs to take these modules over YModem and apply them.

        ``images``: module bytes, or anything with ``.data`` (a ``FlashImage``).
        """
        return sum(self._image_cost(len(image if isinstance(image, bytes) else image.data)) for image in images)

    def _image_cost(self, size: int) -> float:
        flash = self.platform.flash
        sectors = -(-size // self.platform.erase_unit)
        stored = sum(n - 5 for n in data_packet_sizes(size))  # Device OS writes whole packets
        store = flash.erase_cost(sectors) + flash.program_cost(stored)
        apply = flash.erase_cost(sectors) + flash.program_cost(size)
        return (
            ymodem_cost(size, self._link_spec(listening.LISTENING_BAUD)) + store + _RESTART_DELAY + apply + _BOOT_TIME
        )

    def _link_spec(self, baud: int | None = None) -> LinkSpec:
        """USB CDC ignores the baud rate; a UART (``uart=True``) moves 10 bits per byte at it."""
        if not self._uart:
            return USB_CDC
        rate = baud or self._speed() or listening.CONSOLE_BAUD
        return LinkSpec(bytes_per_second=rate / 10, latency=_UART_TURNAROUND)

    # -- pty ----------------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw before anyone opens it, so nothing echoes back; the slave stays open here so the
        # port survives the host closing and re-opening it, as a CDC port does.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._path = os.ttyname(slave)
        if self._link is not None:
            tmp = self._link.with_name(self._link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._path)
            tmp.replace(self._link)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _speed(self) -> int:
        buf = array.array("i", [0] * _TERMIOS2_INTS)
        try:
            fcntl.ioctl(self._master, _TCGETS2, buf)
        except (OSError, ValueError):  # ValueError: the pty was closed under us (fd -1)
            return 0
        return int(buf[_OSPEED_INDEX])

    def _write(self, data: bytes) -> None:
        if not data or self._master < 0:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
                continue
            except OSError:
                return
            view = view[n:]

    # -- main loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        clock = self._clock
        self._last_rx = clock()
        while not self._stop.is_set():
            if self._mode is Mode.GONE:
                self._stop.wait(0.05)
                continue
            self._line_coding()
            if self.mode is Mode.GONE:
                continue
            try:
                ready, _, _ = select.select([self._master, self._wake_r], [], [], 0.01)
            except (OSError, ValueError):
                continue
            data = b""
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:
                    data = b""  # EIO while no one holds the port open
            now = clock()
            if data:
                self._last_rx = now
                self._on_input(data)
            elif self._mode is Mode.YMODEM and now - self._last_rx >= self._nak_timeout:
                self._last_rx = now
                assert self._receiver is not None
                self._reply(self._receiver.on_timeout())
                self._after_receive()
            elif self._mode is Mode.STALLED and now - self._last_rx >= self._stall_recover:
                self._end_transfer("stalled", "the device hung and was reset")
                self._mode = Mode.LISTENING

    def _line_coding(self) -> None:
        speed = self._speed()
        if speed == listening.DFU_BAUD:
            self._mode = Mode.GONE
            self._close_pty()
            self.entered_dfu.set()
        elif speed == listening.LISTENING_BAUD:
            if self._mode is Mode.NORMAL and not self._exited:
                self.timing.spend(0.1, "listening-entry")
                self._mode = Mode.LISTENING
        else:
            self._exited = False

    def _on_input(self, data: bytes) -> None:
        if self._mode is Mode.LISTENING:
            for i, key in enumerate(data):
                self._console(key)
                if self.mode is Mode.YMODEM:
                    # Bytes after 'f' in the same read belong to the transfer.
                    rest = data[i + 1 :]
                    if rest:
                        self._on_input(rest)
                    return
                if self._mode is not Mode.LISTENING:
                    return
        elif self._mode is Mode.YMODEM:
            assert self._receiver is not None
            self._reply(self._receiver.feed(data))
            self._after_receive()
        # NORMAL ignores the console; STALLED swallows everything.

    def _console(self, key: int) -> None:
        ch = chr(key)
        if ch == "i":
            self._write(self._identify_text())
        elif ch == "m":
            self._write(f"Your device MAC address is\r\n{self.mac}\r\n".encode())
        elif ch == "v":
            self._write(f"system firmware version: {self.system_version}\n\r\n".encode())
        elif ch == "s":
            self._write(b"{" + self._system_info_json() + b"}\r\n")
        elif ch == "c":
            self._write(b"Device claimed: no\r\n")
        elif ch == "x":
            self._mode = Mode.NORMAL
            self._exited = True
        elif ch == "f":
            self._write((listening.FLASH_PROMPT + "\r\n").encode())
            if not self._ymodem_supported:
                self.timing.spend(0.1, "console")
                self._write(b"\x18" * 4 + (listening.YMODEM_REMOVED + "\r\n").encode())
                return
            self._transfer = _Transfer()
            self._receiver = YModemReceiver(self)
            self._mode = Mode.YMODEM
            self._last_rx = self._clock()
        # Any other key: Device OS ignores it.

    def _properties(self) -> list[tuple[str, str, str]]:
        """(json key, 'i' label, value): what HAL_OTA_Add_System_Info adds."""
        if not self.platform.cellular:
            return []
        digits = str(int(self.device_id, 16))
        return [("imei", "IMEI", ("35" + digits)[:15]), ("iccid", "ICCID", ("8901" + digits)[:20])]

    def _identify_text(self) -> bytes:
        props = self._properties()
        if not props:
            return f"Your device id is {self.device_id}\r\n".encode()
        lines = [f"Device ID: {self.device_id}\r\n"] + [f"{label}: {value}\r\n" for _, label, value in props]
        return "".join(lines).encode()

    def _system_info_json(self) -> bytes:
        parts = [f'"p":{self.platform.platform_id},']
        parts += [f'"{key}":"{value}",' for key, _, value in self._properties()]
        with self._lock:
            modules = [self._module_json(m) for m in self._modules.values()]
        parts.append('"m":[' + ",".join(modules) + "]")
        return "".join(parts).encode()

    def _module_json(self, module: InstalledModule) -> str:
        slot = self.platform.slot(module.function, module.index)
        letter = listening.MODULE_FUNCTION_LETTERS.get(module.function, "_")
        text = f'{{"s":{slot.max_size if slot else 0},"l":"m","vc":{_VALID_CHECKS},"vv":{_VALID_CHECKS},'
        if module.function == _U:
            text += f'"u":"{module.sha256.hex().upper()}",'
        text += f'"f":"{letter}","n":"{module.index}","v":{module.version},"d":['
        deps = [
            f'{{"f":"{listening.MODULE_FUNCTION_LETTERS.get(f, "_")}","n":"{i}","v":{v},"_":""}}'
            for f, i, v in module.dependencies
            if f in (1, 2, 3, 4, 5, 7)
        ]
        return text + ",".join(deps) + "]}"

    # -- YModem -------------------------------------------------------------------------------------

    def _reply(self, data: bytes) -> None:
        if data and self._corrupt_next_reply:
            self._corrupt_next_reply = False
            data = bytes((data[0] ^ 0x80,)) + data[1:]
        if data and self._mode is Mode.YMODEM:
            self._write(data)

    def _after_receive(self) -> None:
        receiver = self._receiver
        if receiver is None or not receiver.done:
            return
        header = self._transfer.header
        if receiver.outcome is Outcome.COMPLETE and header is not None:
            self._write(
                f"\r\nDownloaded file successfully!\r\nName: {header.name}\r\nSize: {header.size} bytes\r\n".encode()
            )
            self._end_transfer("installed", "")
            self.timing.spend(_RESTART_DELAY, "restart")
            self._write(b"Restarting system to apply firmware update...\r\n")
            self._reboot(apply_size=header.size)
            return
        message = receiver.message
        if receiver.outcome is Outcome.COMPLETE:
            message = ""
        elif message:
            self._write(f"\r\n{message}\r\n".encode())
        self._end_transfer(str(receiver.outcome), message)
        self._mode = Mode.LISTENING

    def _end_transfer(self, outcome: str, message: str) -> None:
        header = self._transfer.header
        if header is not None or outcome != "complete":
            self.transfers.append(
                TransferRecord(
                    header.name if header else "",
                    header.size if header else 0,
                    len(self._transfer.buffer),
                    outcome,
                    message,
                )
            )
        self._receiver = None
        self._transfer = _Transfer()

    def _reboot(self, apply_size: int = 0) -> None:
        # The bootloader copies the new module into place, then Device OS starts again.
        if apply_size:
            sectors = -(-apply_size // self.platform.erase_unit)
            self.timing.spend(self.platform.flash.erase_cost(sectors), "erase")
            self.timing.spend(self.platform.flash.program_cost(apply_size), "program")
        self.timing.spend(_BOOT_TIME, "boot")
        self._drain_input()
        self._exited = False
        self._mode = Mode.LISTENING if self._listen_after_reset else Mode.NORMAL

    def _drain_input(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._master, 4096):
                pass

    def _fault(self, kind: FaultKind, packet: int) -> bool:
        return self.faults.take(kind, packet) is not None

    def _packet_faults(self, packet: int) -> Verdict | None:
        """A fault due at this packet, as the verdict the receiver acts on; None to go on normally."""
        if self._fault(FaultKind.DISCONNECT, packet):
            self._unplug()
            return Verdict.IGNORE
        if self._fault(FaultKind.STALL, packet):
            self._mode = Mode.STALLED
            return Verdict.IGNORE
        if self._transfer.refuse_packet == packet or self._fault(FaultKind.REFUSE_BLOCK, packet):
            self._transfer.refuse_packet = packet
            return Verdict.REFUSE
        if self._fault(FaultKind.ERROR_STATUS, packet):
            return Verdict.FAIL
        if self._fault(FaultKind.SLOW_POLL, packet):
            self._sleep(self._slow_reply)
        if self._fault(FaultKind.CORRUPT_REPLY, packet):
            # The packet is taken, but its answer comes out damaged: bit 7 flipped on the wire.
            self._corrupt_next_reply = True
        return None

    def _unplug(self) -> None:
        self._end_transfer("disconnected", "unplugged")
        self._close_pty()
        self._mode = Mode.GONE
        # A re-plugged board enumerates again on a new port, in listening mode (it has no app yet).
        timer = threading.Timer(0.05, self._replug, args=(self._power_cycles,))
        timer.daemon = True
        timer.start()

    def _replug(self, power_cycle: int) -> None:
        if self._stop.is_set() or power_cycle != self._power_cycles:
            return
        self.timing.spend(_BOOT_TIME, "boot")
        self._open_pty()
        self._exited = False
        self._mode = Mode.LISTENING

    # ReceiverHooks

    def on_header(self, packet: int, header: FileHeader) -> Verdict:
        fault = self._packet_faults(packet)
        if fault is not None:
            return fault
        if header.size == 0 or header.size > self.platform.ota_max:
            return Verdict.FAIL
        self._transfer.header = header
        sectors = -(-header.size // self.platform.erase_unit)
        self.timing.spend(self._link_spec().cost(_SHORT_PACKET + 2), "link")
        self.timing.spend(self.platform.flash.erase_cost(sectors), "erase")
        return Verdict.ACCEPT

    def on_data(self, packet: int, offset: int, payload: bytes) -> Verdict:
        fault = self._packet_faults(packet)
        if fault is not None:
            return fault
        if offset + len(payload) > self.platform.ota_max:
            return Verdict.FAIL
        self.timing.spend(self._link_spec().cost(len(payload) + 5 + 1), "link")
        self.timing.spend(self.platform.flash.program_cost(len(payload)), "program")
        buffer = self._transfer.buffer
        del buffer[offset:]
        buffer += payload
        return Verdict.ACCEPT

    def on_end_of_batch(self, packet: int) -> Verdict:
        fault = self._packet_faults(packet)
        if fault is not None:
            return fault
        header = self._transfer.header
        link = self._link_spec()
        self.timing.spend(link.cost(1 + 1) + link.cost(_SHORT_PACKET + 1), "link")  # EOT, end of batch
        if header is None:
            return Verdict.ACCEPT  # an empty batch: nothing to install
        code = self._validate_and_install(bytes(self._transfer.buffer[: header.size]), header.size)
        if code == 0:
            return Verdict.ACCEPT
        assert self._receiver is not None
        self._receiver.message = f"Validation failed: {code}"
        return Verdict.FAIL

    def _validate_and_install(self, data: bytes, size: int) -> int:
        if len(data) < size:
            return _ERROR_INVALID_SIZE
        try:
            module = parse_module(data)
        except FirmwareError:
            return _ERROR_INVALID_FORMAT
        if not module.size_ok:
            return _ERROR_INVALID_SIZE
        if not module.crc_ok:
            return _ERROR_INTEGRITY
        if module.platform_id != self.platform.platform_id:
            return _ERROR_INVALID_PLATFORM
        function, index = int(module.function), module.prefix.index
        slot = self.platform.slot(function, index)
        if slot is None:
            return _ERROR_UNSUPPORTED_MODULE
        if size > slot.max_size:
            return _ERROR_INVALID_SIZE
        deps = tuple((int(d.function), d.index, d.version) for d in module.prefix.dependencies)
        with self._lock:
            self._modules[(function, index)] = InstalledModule(
                function,
                index,
                module.prefix.module_version,
                module.platform_id,
                module.suffix.sha256,
                deps,
                data,
            )
        return 0
