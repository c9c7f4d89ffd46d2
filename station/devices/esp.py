"""ESP32-family devices flashed through esptool, one serial port each.

Everything that reaches under esptool's public API (its logger, trace strings, the compression
cache, the MD5 record, retry counts) lives in ``station.devices.esptool_adapter``; this module speaks
to the board through that adapter only. esptool's output reaches the progress callback of the call
that caused it and never the user's stdout; its exceptions become ``DeviceError`` subclasses naming
the port, the block and the address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import serial
from serial.tools import list_ports

from firmware_tools.esp.chips import normalise_chip_name
from station.devices import esptool_adapter as adapter
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
    VerifyNote,
    no_progress,
)
from station.devices.esptool_adapter import FatalError
from station.devices.family import BoardFamily, Bus, FirmwareKind, Options, SeenPort, Target, UsbId, serial_slot
from station.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    Reason,
    VerifyMismatch,
    WrongTarget,
)

ROM_BAUD = adapter.ROM_BAUD
# esptool's CLI starts at the ROM's 115200 and stays there unless told (ESPLoader.ESP_ROM_BAUD); what
# Espressif's tools flash with is ESP-IDF's `idf.py flash` default, ESPBAUD 460800: the station's too.
DEFAULT_BAUD = 460800
DEFAULT_CONNECT_ATTEMPTS = adapter.DEFAULT_CONNECT_ATTEMPTS
SDM_VERIFY_NOTE = "verify not possible in secure download mode"
WRITE_MD5_NOTE = "verified by esptool write-flash MD5"
ESP_APP_MAGIC = 0xE9
# Extended header: chip id (u16, little-endian) at image offset 12 (esp-app-image.md §1).
_CHIP_ID_OFFSET = 12
# Kinds of image that must be an ESP app/bootloader image built for the chip being flashed.
CHIP_CHECKED_KINDS = frozenset({"app", "bootloader"})

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

_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}")
_RESULT = re.compile(r"result was ([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_AFTER_SEQ = re.compile(r"after seq (\d+)")
_TIMEOUT_TEXT = ("Timed out", "No serial data received", "stream stopped", "transfer stopped")
_GARBLED_TEXT = ("Invalid SLIP", "Invalid head of packet", "No more data to read", "doesn't match request")
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


def _image_chip_id(data: bytes) -> int | None:
    if len(data) < _CHIP_ID_OFFSET + 2 or data[0] != ESP_APP_MAGIC:
        return None
    return int.from_bytes(data[_CHIP_ID_OFFSET : _CHIP_ID_OFFSET + 2], "little")


# ---- the device ---------------------------------------------------------------------------------


class EspDevice(Device):
    """One ESP32-family board in its ROM download loader, reached through ``port_url``.

    ``port_url`` is anything pyserial opens: ``/dev/ttyUSB0``, ``socket://host:port``, a pty path.
    The loader connection is opened on first use and kept until ``restart`` or ``close``.
    ``chip``: the chip the bundle or profile names (any spelling, "ESP32-S3" or "esp32s3"); given,
    esptool connects as that chip and skips detection (a board of another chip is a WrongTarget),
    "auto" detects. ``baud`` and ``connect_attempts`` default to ESP-IDF's flashing baud and esptool's
    attempts (see DEFAULT_BAUD).
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
        connect_attempts: int = DEFAULT_CONNECT_ATTEMPTS,
        vid: int | None = None,
        pid: int | None = None,
        usb_serial_number: str | None = None,
        description: DeviceDescription | None = None,
    ) -> None:
        self._description = description  # what discovery said: kept, so describe() names the same slot
        self.port_url = port_url
        self.port_path = port_path or port_url
        self.baud = baud
        self.chip = "auto" if chip == "auto" else normalise_chip_name(chip)
        self.stub = stub
        self.compress = compress
        self.before = before
        self.connect_attempts = connect_attempts
        self.vid = vid
        self.pid = pid
        self.usb_serial_number = usb_serial_number
        self._loader: adapter.Loader | None = None
        self._pending: Any = None  # esptool's object while connecting, to close if a step fails
        self._identity: DeviceIdentity | None = None
        self._sink = adapter.Sink()
        # Per image (address, sha256): the MD5 check esptool's write_flash did, or None for none.
        self._written: dict[tuple[int, str], adapter.Md5Check | None] = {}

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
    def _esptool(self, where: _Where) -> Iterator[adapter.Sink]:
        """Run esptool with its output captured for this device, its errors translated."""
        with adapter.capture(self._sink) as sink:
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
        loader, self._loader = self._loader, None
        pending, self._pending = self._pending, None
        if loader is not None:
            loader.close()
        elif pending is not None:
            adapter.close_port(pending)

    def _keep_pending(self, esp: Any) -> None:
        self._pending = esp

    def _connected(self, progress: ProgressCallback) -> adapter.Loader:
        if self._loader is not None:
            return self._loader
        progress(Progress(Phase.CONNECT, 0, 1))
        with self._esptool(_Where("connect", self.name)) as sink:
            self._loader = adapter.connect(
                self.port_url,
                chip=self.chip,
                baud=self.baud,
                before=self.before,
                connect_attempts=self.connect_attempts,
                stub=self.stub,
                sink=sink,
                on_loader=self._keep_pending,
            )
            self._pending = None
        progress(Progress(Phase.CONNECT, 1, 1))
        return self._loader

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
        loader = self._connected(no_progress)
        if loader.secure_download_mode:
            mac = self._mac_from_usb()
            platform = loader.chip_name
        else:
            with self._esptool(_Where("identify", self.name)):
                mac = loader.read_mac()
                platform = loader.chip_name
        self._identity = DeviceIdentity(device_id=mac.hex(), platform=platform, mac=":".join(f"{b:02x}" for b in mac))
        return self._identity

    def _mac_from_usb(self) -> bytes:
        """In Secure Download Mode the ROM reads no eFuse: the MAC comes from the USB serial number,
        which the ESP32-S3/C3/C6 USB-Serial/JTAG port sets to the chip's MAC ("F4:12:FA:43:6B:A0")."""
        text = (self.usb_serial_number or "").strip()
        if _MAC_TEXT.fullmatch(text):
            return bytes.fromhex(text.replace(":", "").replace("-", ""))
        raise DeviceError(
            "identify: the board is in Secure Download Mode, where the ROM loader reads no eFuse, and its "
            "port's USB serial number is not a MAC",
            device=self.name,
            reason=Reason.PROTOCOL,
            hint="connect the board through its own USB-Serial/JTAG port (its serial number is the MAC)",
        )

    @property
    def secure_download_mode(self) -> bool:
        """The board's ROM is in Secure Download Mode (known once connected)."""
        return self._loader is not None and self._loader.secure_download_mode

    def _check_image(self, loader: adapter.Loader, image: FlashImage) -> None:
        if image.kind not in CHIP_CHECKED_KINDS:
            return
        chip_id = _image_chip_id(image.data)
        if chip_id is None:
            raise WrongTarget(
                f"{image.name} is not an ESP image (no 0xE9 header) but is flashed as {image.kind}",
                device=self.name,
                address=image.address,
            )
        if chip_id != loader.image_chip_id:
            raise WrongTarget(
                f"{image.name} is built for chip id {chip_id}, this board is a {loader.chip_name} "
                f"(chip id {loader.image_chip_id})",
                device=self.name,
                address=image.address,
                hint="flash the image built for this chip",
            )

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        loader = self._connected(progress)
        for image in images:
            self._check_image(loader, image)
        for image in images:
            progress(Progress(Phase.WRITE, 0, image.size, image.name))

            def report(done: int, image: FlashImage = image) -> None:
                progress(Progress(Phase.WRITE, done, image.size, image.name))

            transfer = adapter.Transfer(image.size, image.address, loader.block_size, report)
            self._written.pop((image.address, image.sha256), None)
            with self._esptool(_Where("write", self.name, 0, image.address)) as sink:
                sink.transfer = transfer
                # In Secure Download Mode there is no stub; esptool then writes uncompressed (its
                # default is to compress only through the stub), and so does the station.
                compress = self.compress and not loader.secure_download_mode
                checked = loader.write(image.address, image.data, compress=compress)
            self._written[(image.address, image.sha256)] = checked
            if transfer.reported != image.size:
                progress(Progress(Phase.WRITE, image.size, image.size, image.name))

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> VerifyNote | None:
        """Each image's MD5 as the board computes it. The check esptool's ``write_flash`` already made
        on this connection counts (its digest is compared here again, not asked for twice); in
        Secure Download Mode the ROM computes no MD5, as esptool itself skips it: nothing is read
        and the note says so."""
        loader = self._connected(progress)
        if loader.secure_download_mode:
            return VerifyNote(SDM_VERIFY_NOTE, verified=False)
        total = sum(image.size for image in images)
        done = 0
        reused = 0
        progress(Progress(Phase.VERIFY, 0, total))
        for image in images:
            checked = self._written.get((image.address, image.sha256))
            if checked is not None:
                reused += 1
            else:
                with self._esptool(_Where("verify", self.name, None, image.address)):
                    digest = loader.md5(image.address, image.size)
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
        if reused == len(images) and images:
            return VerifyNote(WRITE_MD5_NOTE, verified=True)
        return None

    def read_flash(self, address: int, size: int) -> bytes:
        """``size`` bytes of the board's flash from ``address`` (e.g. its partition table, its NVS)."""
        esp = self._connected(no_progress)
        with self._esptool(_Where("read", self.name, None, address)):
            return esp.read_flash(address, size)

    def restart(self) -> None:
        loader = self._loader
        if loader is None:
            return
        try:
            with self._esptool(_Where("restart", self.name)):
                loader.hard_reset()
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
