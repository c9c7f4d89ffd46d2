"""ESP32-family devices flashed through esptool's public API (``esptool.cmds``), one serial port each.

esptool reports everything through one process-global logger. This module installs, once, a logger
that hands each thread's output to whatever that thread registered: so progress reaches the
callback of the call that caused it, several boards flashed from threads never mix their output
(esptool issue 1102), and nothing reaches the user's stdout. esptool's exceptions become
``DeviceError`` subclasses naming the port, the block and the address.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import serial
from esp_pylib.logger import EspLog, EspLogBase
from esptool.util import FatalError
from serial.tools import list_ports

from station.devices.base import (
    Device,
    DeviceDescription,
    DeviceIdentity,
    Family,
    FlashImage,
    Mode,
    Phase,
    Progress,
    ProgressCallback,
    no_progress,
)
from station.devices.family import BoardFamily, Bus, FirmwareKind, Options, SeenPort, Target, UsbId, serial_slot
from station.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    Reason,
    VerifyMismatch,
    WrongTarget,
)

ROM_BAUD = 115200
DEFAULT_BAUD = 921600
ESP_APP_MAGIC = 0xE9
# Extended header: chip id (u16, little-endian) at image offset 12 (esp-app-image.md §1).
_CHIP_ID_OFFSET = 12
# Kinds of image that must be an ESP app/bootloader image built for the chip being flashed.
CHIP_CHECKED_KINDS = frozenset({"app", "bootloader"})
_TRANSCRIPT_LINES = 200

_B = Mode.BOOTLOADER
# The USB-serial bridges found on ESP boards, and Espressif's own USB, by vendor AND product: a
# vendor alone would have DTR/RTS toggled on any FTDI or CP210x device (a Particle programmer
# shield, a JTAG probe). Names and port counts: see docs/hardware.md for what was checked against what.
USB_IDS: tuple[UsbId, ...] = (
    UsbId(0x10C4, 0xEA60, "Silicon Labs CP2102/CP2102N/CP2104", _B),
    UsbId(0x10C4, 0xEA61, "Silicon Labs CP210x (USBXpress PID)", _B),
    UsbId(0x10C4, 0xEA63, "Silicon Labs CP210x (Windows Update PID)", _B),
    UsbId(0x10C4, 0xEA70, "Silicon Labs CP2105 (dual UART)", _B, serial_interfaces=2),
    UsbId(0x10C4, 0xEA71, "Silicon Labs CP2108 (quad UART)", _B, serial_interfaces=4),
    UsbId(0x1A86, 0x7523, "WCH CH340/CH341", _B),
    UsbId(0x1A86, 0x7522, "WCH CH340K", _B),
    UsbId(0x1A86, 0x5523, "WCH CH341A (serial mode)", _B),
    UsbId(0x1A86, 0x55D2, "WCH CH342 (dual UART)", _B, serial_interfaces=2),
    UsbId(0x1A86, 0x55D3, "WCH CH343", _B),
    UsbId(0x1A86, 0x55D4, "WCH CH9102", _B),
    UsbId(0x1A86, 0x55D5, "WCH CH344 (quad UART)", _B, serial_interfaces=4),
    UsbId(0x0403, 0x6001, "FTDI FT232R", _B),
    # ESP-Prog and ESP-WROVER-KIT: channel A (interface 0) is the JTAG one, channel B the UART.
    UsbId(
        0x0403, 0x6010, "FTDI FT2232H (ESP-Prog, ESP-WROVER-KIT)", _B, serial_interfaces=2, not_probed=frozenset({0})
    ),
    UsbId(0x0403, 0x6011, "FTDI FT4232H (quad UART)", _B, serial_interfaces=4),
    UsbId(0x0403, 0x6014, "FTDI FT232H", _B),
    UsbId(0x0403, 0x6015, "FTDI FT231X/FT-X", _B),
    # esptool's ESPLoader.USB_JTAG_SERIAL_PID: the USB-Serial/JTAG of the C3, C5, C6, H2, P4 and S3.
    UsbId(0x303A, 0x1001, "Espressif USB-Serial/JTAG", _B),
    UsbId(0x303A, 0x0002, "Espressif ESP32-S2 USB-OTG (ROM download)", _B),
)


# ---- esptool's output, per thread ---------------------------------------------------------------


class _Transfer:
    """The write in progress on one thread: where its progress goes and how far it got."""

    _WRITING_AT = re.compile(r"0x([0-9a-fA-F]+)")

    def __init__(self, image: FlashImage, block_size: int, progress: ProgressCallback) -> None:
        self.image = image
        self.block_size = block_size
        self.progress = progress
        self.blocks_done = 0
        self.address = image.address  # next flash address to be written
        self.reported = 0

    def update(self, current: int, total: int, prefix: str) -> None:
        if total <= 0:
            return
        self.blocks_done = -(-current // self.block_size)
        found = self._WRITING_AT.search(prefix)
        if found:
            self.address = int(found.group(1), 16)
        # esptool counts bytes on the wire (compressed); report bytes of the image instead.
        done = min(self.image.size, current * self.image.size // total)
        if done != self.reported:
            self.reported = done
            self.progress(Progress(Phase.WRITE, done, self.image.size, self.image.name))


class _Sink:
    """Everything esptool says on one thread during one device call."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=_TRANSCRIPT_LINES)
        self._partial = ""
        self.transfer: _Transfer | None = None
        # esptool retries a failed block on a reader it already broke, so its final error
        # ("No more data to read") hides the cause; the first wire-level problem is kept here.
        self.wire_problem: str | None = None

    def trace(self, message: str, newline: bool = False) -> None:
        """Installed as the loader's trace hook: keeps the first sign of trouble on the wire."""
        if self.wire_problem is None and message.startswith(_WIRE_PROBLEMS):
            self.wire_problem = message

    def text(self, text: str) -> None:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(line for line in parts if line.strip())

    def transcript(self) -> list[str]:
        return [*self.lines, *([self._partial] if self._partial.strip() else [])]


class _ThreadDispatchLogger(EspLogBase):
    """esptool's logger, replaced: a thread that registered a sink gets its own output, others fall back."""

    def __init__(self, fallback: EspLogBase | None) -> None:
        self._fallback = fallback
        self._local = threading.local()

    def sink(self) -> _Sink | None:
        return getattr(self._local, "sink", None)

    @contextlib.contextmanager
    def capture(self, sink: _Sink) -> Iterator[_Sink]:
        previous = self.sink()
        self._local.sink = sink
        try:
            yield sink
        finally:
            self._local.sink = previous

    def _say(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], prefix: str = "") -> None:
        sink = self.sink()
        if sink is not None:
            sep = str(kwargs.get("sep", " "))
            end = str(kwargs.get("end", "\n"))
            sink.text(prefix + sep.join(str(a) for a in args) + end)
        elif self._fallback is not None:
            getattr(self._fallback, method)(*args, **kwargs)

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._say("print", args, kwargs)

    def note(self, *args: Any) -> None:
        self._say("note", args, {}, "Note: ")

    def hint(self, *args: Any) -> None:
        self._say("hint", args, {}, "Hint: ")

    def debug(self, *args: Any) -> None:
        self._say("debug", args, {})

    def warn(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("warn", args, {} if suggestion is None else {"suggestion": suggestion}, "Warning: ")

    def err(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("err", args, {} if suggestion is None else {"suggestion": suggestion}, "Error: ")

    # esptool still calls the legacy names.
    def warning(self, message: str, suggestion: str | None = None) -> None:
        self.warn(message, suggestion=suggestion)

    def error(self, message: str, suggestion: str | None = None) -> None:
        self.err(message, suggestion=suggestion)

    def stage(self, finish: bool = False) -> None:
        if self.sink() is None and self._fallback is not None:
            self._fallback.stage(finish=finish)

    def set_verbosity(self, mode: int | str) -> None:
        if self._fallback is not None:
            self._fallback.set_verbosity(mode)

    def progress_bar(
        self,
        cur_iter: int,
        total_iters: int,
        prefix: str = "",
        suffix: str = "",
        bar_length: int = 30,
    ) -> None:
        sink = self.sink()
        if sink is None:
            if self._fallback is not None:
                self._fallback.progress_bar(cur_iter, total_iters, prefix, suffix, bar_length)
            return
        if sink.transfer is not None:
            sink.transfer.update(cur_iter, total_iters, prefix)

    def counter_line(self, prefix: str, suffix: str, *, final: bool = False) -> None:
        if self.sink() is None and self._fallback is not None:
            self._fallback.counter_line(prefix, suffix, final=final)


_INSTALL_LOCK = threading.Lock()


def _dispatcher() -> _ThreadDispatchLogger:
    """The per-thread logger, installed as esptool's logger on first use (esptool allows only one)."""
    with _INSTALL_LOCK:
        current = EspLog.instance
        if isinstance(current, _ThreadDispatchLogger):
            return current
        dispatcher = _ThreadDispatchLogger(current)
        EspLog.instance = dispatcher
        return dispatcher


# ---- discovery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EspPort:
    """A serial port that is an ESP board's, by its adapter's USB IDs in the family table."""

    description: DeviceDescription
    adapter: str  # the table's name: "Silicon Labs CP2102/CP2102N/CP2104", "FTDI FT4232H (quad UART)"...

    @property
    def device(self) -> str:
        assert self.description.serial_port is not None
        return self.description.serial_port

    @property
    def port_path(self) -> str:
        return self.description.port_path

    def open(self, **kwargs: Any) -> EspDevice:
        return open_esp(self.description, kwargs)


def find_esp_ports(comports: Callable[[], Sequence[Any]] = list_ports.comports) -> list[EspPort]:
    """Serial ports the ESP family claims, sorted by port path (its slot)."""
    from station.devices.particle_serial import seen_serial_port

    found: list[EspPort] = []
    for info in comports():
        port = seen_serial_port(info)
        description = claim(port)
        usb_id = FAMILY.usb_id(port.vid, port.pid)
        if description is not None and usb_id is not None:
            found.append(EspPort(description, usb_id.name))
    return sorted(found, key=lambda p: p.port_path)


def claim(port: SeenPort) -> DeviceDescription | None:
    """A serial port behind one of the table's bridges, unless it is an interface that is not the
    board's UART (ESP-Prog's JTAG channel)."""
    if port.bus is not Bus.SERIAL or port.device is None:
        return None
    usb_id = FAMILY.usb_id(port.vid, port.pid)
    if usb_id is None or port.interface in usb_id.not_probed:
        return None
    return _described(port, serial_slot(port, usb_id), usb_id.vid, usb_id.pid)


def claim_named(port: SeenPort) -> DeviceDescription | None:
    """A serial port the profile lists as a slot although its USB IDs are not in the table: the
    profile's word makes it an ESP board (a bridge this table does not know yet)."""
    if port.bus is not Bus.SERIAL or port.device is None:
        return None
    slot = port.slot or port.location or port.device
    return _described(port, slot, port.vid, port.pid)


def _described(port: SeenPort, slot: str, vid: int | None, pid: int | None) -> DeviceDescription:
    return DeviceDescription(
        family=Family.ESP,
        port_path=slot,
        mode=Mode.BOOTLOADER,
        vid=vid,
        pid=pid,
        usb_serial_number=port.usb_serial_number,
        serial_port=port.device,
        location=port.location,
    )


def open_esp(description: DeviceDescription, options: Options) -> EspDevice:
    """The board behind ``description.serial_port``; the loader is connected on first use."""
    if description.serial_port is None:
        raise DeviceError("no serial port to open", device=description.port_path, reason=Reason.NOT_FOUND)
    return EspDevice(
        description.serial_port,
        port_path=description.port_path,
        vid=description.vid,
        pid=description.pid,
        usb_serial_number=description.usb_serial_number,
        description=description,
        **options,
    )


def accepts_chip(target: Target, identity: DeviceIdentity) -> str | None:
    """An ESP board takes images built for its own chip (any chip: a partition table alone)."""
    from firmware_tools.esp.chips import normalise_chip_name

    if not target.is_esp:
        return f"the device is {identity.platform} (an ESP): it cannot take a Particle module ({target.describe()})"
    if target.chip is not None and normalise_chip_name(identity.platform) != normalise_chip_name(target.chip):
        return f"device is {identity.platform}, {target.source} is for {target.chip}"
    return None


# ---- errors -------------------------------------------------------------------------------------

_RESULT = re.compile(r"result was ([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_AFTER_SEQ = re.compile(r"after seq (\d+)")
_TIMEOUT_TEXT = ("Timed out", "No serial data received", "stream stopped", "transfer stopped")
_GARBLED_TEXT = ("Invalid SLIP", "Invalid head of packet", "No more data to read", "doesn't match request")
_WIRE_PROBLEMS = (
    "No serial data received",
    "Serial data stream stopped",
    "Packet content transfer stopped",
    "Read invalid data",
)
_REFUSED_CODES = frozenset({0x07, 0xC1})  # checksum error (ROM, stub)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(". ")


@dataclass(frozen=True)
class _Where:
    doing: str  # "write", "verify", "connect" ...
    device: str
    block: int | None = None
    address: int | None = None


def _translate(exc: BaseException, where: _Where, wire_problem: str | None = None) -> DeviceError:
    """The DeviceError an esptool / pyserial exception means, naming where it happened."""
    said = _first_line(exc)
    if wire_problem is not None and "No more data to read" in said:
        if wire_problem.startswith("Read invalid data"):
            said = "Invalid SLIP framing in the reply: it was corrupted on the line"
        else:
            said = _first_line(RuntimeError(wire_problem))
    common: dict[str, Any] = {"device": where.device, "block": where.block, "address": where.address}
    if isinstance(exc, serial.SerialTimeoutException):
        return DeviceTimeout(f"{where.doing}: serial write timed out ({said})", **common)
    if isinstance(exc, serial.SerialException | OSError) and not isinstance(exc, FatalError):
        if "Permission denied" in said:
            return DeviceError(
                f"{where.doing}: cannot open the port ({said})",
                reason=Reason.PERMISSION,
                hint="add the user to the dialout group or install the udev rules",
                **common,
            )
        return DeviceDisconnected(
            f"{where.doing}: lost the link to the board ({said})",
            hint="check the cable and re-plug the board, then flash again",
            **common,
        )
    if not isinstance(exc, FatalError):
        return DeviceError(f"{where.doing}: {said}", reason=Reason.INTERNAL, **common)
    seq = _AFTER_SEQ.search(said)
    if seq is not None and where.block is not None:
        common["block"] = int(seq.group(1))
    result = _RESULT.search(said)
    if "Could not open" in said:
        reason = Reason.PERMISSION if "Permission denied" in str(exc) else Reason.NOT_FOUND
        return DeviceError(f"{where.doing}: {said}", reason=reason, **common)
    if "Failed to connect" in said:
        return DeviceTimeout(
            f"{where.doing}: no ESP ROM loader answered ({said})",
            hint="hold BOOT and press EN to enter download mode, or check the port",
            **common,
        )
    if "Wrong chip argument" in said or "will not fit" in said:
        return WrongTarget(f"{where.doing}: {said}", **common)
    if "MD5 of file does not match" in said or "written flash region is empty" in said:
        return VerifyMismatch(f"{where.doing}: the flash does not hold what was written ({said})", **common)
    if result is not None:
        failed, code = int(result.group(1), 16), int(result.group(2), 16)
        status = f"status {failed:02x} {code:02x}"
        if code in _REFUSED_CODES:
            return DeviceError(f"{where.doing}: the board refused the block ({said})", reason=Reason.REFUSED, **common)
        return DeviceError(
            f"{where.doing}: the board reported an error, {status} ({said})",
            reason=Reason.DEVICE_STATUS,
            **common,
        )
    if any(text in said for text in _TIMEOUT_TEXT):
        return DeviceTimeout(f"{where.doing}: the board stopped answering ({said})", **common)
    if any(text in said for text in _GARBLED_TEXT):
        return DeviceError(f"{where.doing}: garbled answer from the board ({said})", **common)
    return DeviceError(f"{where.doing}: {said}", **common)


def _untraced_write(esp: Any) -> Callable[[bytes], None]:
    """esptool's ``ESPLoader.write`` (SLIP-frame a request, send it) without its trace line.

    esptool builds a hex dump of every frame it sends even when tracing is off (an f-string passed
    to ``trace``): about 10 ms of CPU per 16 KiB block, half a second per MiB written, all of it
    holding the GIL that other boards' threads need. Nothing here reads those lines.
    """

    def write(packet: bytes) -> None:
        esp._port.write(b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0")

    return write


def _image_chip_id(data: bytes) -> int | None:
    if len(data) < _CHIP_ID_OFFSET + 2 or data[0] != ESP_APP_MAGIC:
        return None
    return int.from_bytes(data[_CHIP_ID_OFFSET : _CHIP_ID_OFFSET + 2], "little")


# ---- the device ---------------------------------------------------------------------------------


class EspDevice(Device):
    """One ESP32-family board in its ROM download loader, reached through ``port_url``.

    ``port_url`` is anything pyserial opens: ``/dev/ttyUSB0``, ``socket://host:port``, a pty path.
    The loader connection is opened on first use and kept until ``restart`` or ``close``.
    """

    def __init__(
        self,
        port_url: str,
        *,
        port_path: str | None = None,
        baud: int = DEFAULT_BAUD,
        chip: str = "auto",
        stub: bool = True,
        compress: bool = True,
        before: str = "default-reset",
        connect_attempts: int = 3,
        vid: int | None = None,
        pid: int | None = None,
        usb_serial_number: str | None = None,
        description: DeviceDescription | None = None,
    ) -> None:
        self._description = description  # what discovery said: kept, so describe() names the same slot
        self.port_url = port_url
        self.port_path = port_path or port_url
        self.baud = baud
        self.chip = chip
        self.stub = stub
        self.compress = compress
        self.before = before
        self.connect_attempts = connect_attempts
        self.vid = vid
        self.pid = pid
        self.usb_serial_number = usb_serial_number
        self._esp: Any = None
        self._identity: DeviceIdentity | None = None
        self._sink = _Sink()

    # ---- plumbing -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        if self._identity is not None:
            return f"{self.port_path} ({self._identity.platform} {self._identity.mac})"
        return self.port_path

    def transcript(self) -> list[str]:
        """The last lines esptool said for this device (for logs and bug reports; never printed)."""
        return self._sink.transcript()

    @contextlib.contextmanager
    def _esptool(self, where: _Where) -> Iterator[_Sink]:
        """Run esptool with its output captured for this device, its errors translated."""
        with _dispatcher().capture(self._sink) as sink:
            sink.wire_problem = None
            try:
                yield sink
            except DeviceError:
                raise
            except (FatalError, serial.SerialException, OSError) as exc:
                transfer = sink.transfer
                if transfer is not None:
                    where = _Where(where.doing, self.name, transfer.blocks_done, transfer.address)
                else:
                    where = _Where(where.doing, self.name, where.block, where.address)
                self._drop()
                raise _translate(exc, where, sink.wire_problem) from exc
            finally:
                sink.transfer = None

    def _drop(self) -> None:
        esp, self._esp = self._esp, None
        if esp is not None:
            with contextlib.suppress(Exception):
                esp._port.close()

    def _instrument(self, esp: Any) -> None:
        # esptool would quietly reconnect and rewrite after a lost link; the line decides that.
        esp.WRITE_FLASH_ATTEMPTS = 1
        esp.write = _untraced_write(esp)
        # The SLIP reader takes the trace hook when it is rebuilt, which flush_input does.
        esp.trace = self._sink.trace
        esp.flush_input()

    def _connected(self, progress: ProgressCallback) -> Any:
        if self._esp is not None:
            return self._esp
        from esptool.cmds import attach_flash, connect_esp, detect_chip, run_stub

        progress(Progress(Phase.CONNECT, 0, 1))
        with self._esptool(_Where("connect", self.name)):
            if self.chip == "auto":
                esp = detect_chip(
                    self.port_url,
                    ROM_BAUD,
                    connect_mode=self.before,
                    connect_attempts=self.connect_attempts,
                )
            else:
                esp = connect_esp(
                    port=self.port_url,
                    chip=self.chip,
                    initial_baud=ROM_BAUD,
                    before=self.before,
                    connect_attempts=self.connect_attempts,
                )
            self._esp = esp
            if self.stub and not esp.IS_STUB and not esp.secure_download_mode:
                esp = run_stub(esp)
                self._esp = esp
            if self.baud != ROM_BAUD:
                esp.change_baud(self.baud)
            self._instrument(esp)
            attach_flash(esp)
        progress(Progress(Phase.CONNECT, 1, 1))
        return esp

    # ---- Device -------------------------------------------------------------------------------

    def describe(self) -> DeviceDescription:
        if self._description is not None:
            return dataclasses.replace(self._description, serial_port=self.port_url)
        return DeviceDescription(
            family=Family.ESP,
            port_path=self.port_path,
            mode=Mode.BOOTLOADER,
            vid=self.vid,
            pid=self.pid,
            usb_serial_number=self.usb_serial_number,
            serial_port=self.port_url,
        )

    def identify(self) -> DeviceIdentity:
        if self._identity is not None:
            return self._identity
        esp = self._connected(no_progress)
        with self._esptool(_Where("identify", self.name)):
            mac = bytes(esp.read_mac("BASE_MAC"))
            platform = str(esp.CHIP_NAME)
        self._identity = DeviceIdentity(device_id=mac.hex(), platform=platform, mac=":".join(f"{b:02x}" for b in mac))
        return self._identity

    def _check_image(self, esp: Any, image: FlashImage) -> None:
        if image.kind not in CHIP_CHECKED_KINDS:
            return
        chip_id = _image_chip_id(image.data)
        if chip_id is None:
            raise WrongTarget(
                f"{image.name} is not an ESP image (no 0xE9 header) but is flashed as {image.kind}",
                device=self.name,
                address=image.address,
            )
        if chip_id != esp.IMAGE_CHIP_ID:
            raise WrongTarget(
                f"{image.name} is built for chip id {chip_id}, this board is a {esp.CHIP_NAME} "
                f"(chip id {esp.IMAGE_CHIP_ID})",
                device=self.name,
                address=image.address,
                hint="flash the image built for this chip",
            )

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        from esptool.cmds import write_flash

        esp = self._connected(progress)
        for image in images:
            self._check_image(esp, image)
        for image in images:
            progress(Progress(Phase.WRITE, 0, image.size, image.name))
            transfer = _Transfer(image, int(esp.FLASH_WRITE_SIZE), progress)
            with self._esptool(_Where("write", self.name, 0, image.address)) as sink:
                sink.transfer = transfer
                write_flash(
                    self._esp,
                    [(image.address, bytes(image.data))],
                    compress=self.compress,
                    no_compress=not self.compress,
                    no_progress=False,
                )
            if transfer.reported != image.size:
                progress(Progress(Phase.WRITE, image.size, image.size, image.name))

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        esp = self._connected(progress)
        total = sum(image.size for image in images)
        done = 0
        progress(Progress(Phase.VERIFY, 0, total))
        for image in images:
            with self._esptool(_Where("verify", self.name, None, image.address)):
                digest = esp.flash_md5sum(image.address, image.size)
            expected = hashlib.md5(image.data).hexdigest()
            if digest != expected:
                raise VerifyMismatch(
                    f"{image.name}: flash MD5 {digest} is not the image's {expected}",
                    device=self.name,
                    address=image.address,
                    hint="flash the board again",
                )
            done += image.size
            progress(Progress(Phase.VERIFY, done, total, image.name))

    def read_flash(self, address: int, size: int) -> bytes:
        """``size`` bytes of the board's flash from ``address`` (e.g. its partition table, its NVS)."""
        esp = self._connected(no_progress)
        with self._esptool(_Where("read", self.name, None, address)):
            return bytes(esp.read_flash(address, size))

    def restart(self) -> None:
        from esptool.cmds import reset_chip

        esp = self._esp
        if esp is None:
            return
        try:
            with self._esptool(_Where("restart", self.name)):
                reset_chip(esp, "hard-reset")
        except DeviceDisconnected:
            pass  # the board resetting under us is what was asked for
        finally:
            self._drop()

    def close(self) -> None:
        self._drop()


FAMILY = BoardFamily(
    key=Family.ESP,
    title="ESP32 family over its serial ROM loader (esptool)",
    bus=Bus.SERIAL,
    firmware=FirmwareKind.ESP,
    usb_ids=USB_IDS,
    claims=claim,
    open=open_esp,
    accepts=accepts_chip,
)
