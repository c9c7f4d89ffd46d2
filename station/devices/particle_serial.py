"""Particle devices on a serial port in listening mode: identify with ``i s v m``, flash with ``f`` + YModem.

What ``verify`` can honestly mean here: listening mode cannot read flash back. After each
image the device itself validated it (CRC-32, platform, size) before acknowledging the
end of the batch; ``verify`` then asks ``s`` for the module list and requires, for every image,
a module in main store with the same function, index and version whose validity checks all
passed, and — for user parts, the only modules Device OS reports a hash for — the same
SHA-256 the image carries in its suffix. For system parts and bootloaders the check is the
device's CRC validation plus function/index/version; ``last_verification`` says which it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import serial
from serial.tools import list_ports

from firmware_tools.errors import FirmwareError
from firmware_tools.particle import parse_module, platform_name
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
from station.devices.family import (
    BoardFamily,
    Bus,
    FirmwareKind,
    Options,
    SeenPort,
    UsbId,
    accepts_particle_platform,
    serial_slot,
)
from station.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    InputError,
    Reason,
    VerifyMismatch,
    WrongTarget,
)
from station.protocols import listening, ymodem
from station.protocols.listening import ListeningClient, SystemInfo
from station.protocols.particle_usb import CORE, PLATFORMS

_DEVICE_ID_RE = re.compile(r"[0-9a-fA-F]{24}")
_RESTARTING = b"Restarting system to apply firmware update..."
_PROBE_TIMEOUT = 0.15  # a console in listening mode answers `v` within milliseconds
_LISTENING_ENTRY = 3.0  # how long a device may take to enter listening mode after the line coding

SerialFactory = Callable[..., serial.Serial]


class SerialStream:
    """``ymodem.ByteStream`` over a pyserial port: bounded reads, link loss as DeviceDisconnected."""

    def __init__(self, port: serial.Serial, device: str) -> None:
        self._port = port
        self._device = device

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceDisconnected(f"serial write failed: {exc}", device=self._device) from None

    def read(self, size: int, timeout: float) -> bytes:
        try:
            wait = max(timeout, 0.0)
            if self._port.timeout != wait:  # pyserial re-applies the termios on every change
                self._port.timeout = wait
            first = self._port.read(1)
            if not first:
                return b""
            waiting = self._port.in_waiting
            rest = self._port.read(min(waiting, size - 1)) if waiting and size > 1 else b""
            return bytes(first + rest)
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            # pyserial reports a vanished port as "readiness to read but returned no data", and
            # one whose termios cannot be re-applied (a timeout change) as a ValueError.
            raise DeviceDisconnected(f"serial port lost: {exc}", device=self._device) from None


@dataclass(frozen=True)
class ModuleCheck:
    """How one image was verified: ``sha_checked`` is False where the device reports no hash."""

    image: str
    function: int
    index: int
    version: int
    sha_checked: bool


@dataclass(frozen=True)
class _ModuleFacts:
    function: int
    index: int
    version: int
    platform_id: int
    sha256: str


def _module_facts(image: FlashImage) -> _ModuleFacts:
    try:
        module = parse_module(image.data, name=image.name)
    except FirmwareError as exc:
        raise InputError(f"{image.name}: not a Particle module ({exc}); YModem flashing takes modules only") from None
    if not module.crc_ok:
        raise InputError(
            f"{image.name}: module CRC-32 is {module.crc32_computed:08x}, the file says {module.crc32_stored:08x}",
            hint="the file is damaged; the device would refuse it",
        )
    return _ModuleFacts(
        int(module.function),
        module.prefix.index,
        module.prefix.module_version,
        module.platform_id,
        module.suffix.sha256.hex(),
    )


class ParticleSerialDevice(Device):
    """A Particle device on ``port`` (e.g. /dev/ttyACM0). ``port_path`` is its physical USB slot."""

    def __init__(
        self,
        port: str,
        *,
        port_path: str | None = None,
        timeout: float = 10.0,
        usb_serial_number: str | None = None,
        vid: int | None = None,
        pid: int | None = None,
        block_size: int = ymodem.LONG_BLOCK,
        retries: int = 5,
        finish_timeout: float = 70.0,
        reconnect_timeout: float = 30.0,
        batch_gap: float = listening.BATCH_GAP,
        serial_factory: SerialFactory = serial.Serial,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        description: DeviceDescription | None = None,
    ) -> None:
        self.port = port
        self._description = description  # what discovery said: kept, so describe() names the same slot
        self._port_path = port_path or port
        self._timeout = timeout
        self._usb_serial = usb_serial_number
        self._vid = vid
        self._pid = pid
        self._block = block_size
        self._retries = retries
        self._finish_timeout = finish_timeout
        self._reconnect_timeout = reconnect_timeout
        self._batch_gap = batch_gap
        self._open_serial = serial_factory
        self._clock = clock
        self._sleep = sleep
        self._serial: serial.Serial | None = None
        self._identity: DeviceIdentity | None = None
        self._info: SystemInfo | None = None
        self.last_verification: tuple[ModuleCheck, ...] = ()

    @property
    def _label(self) -> str:
        return f"{self.port} ({self._identity.device_id})" if self._identity else self.port

    # -- the Device interface ---------------------------------------------------------------------

    def describe(self) -> DeviceDescription:
        if self._description is not None:
            return dataclasses.replace(self._description, serial_port=self.port)
        return DeviceDescription(
            family=Family.PARTICLE_SERIAL,
            port_path=self._port_path,
            mode=Mode.LISTENING,
            vid=self._vid,
            pid=self._pid,
            usb_serial_number=self._usb_serial,
            serial_port=self.port,
        )

    def identify(self) -> DeviceIdentity:
        client = self._client()
        reply = client.device_id(max(self._timeout, listening.IDENTIFY_TIMEOUT))
        if not _DEVICE_ID_RE.fullmatch(reply.device_id):
            raise listening.ReplyError(f"device ID {reply.device_id!r} is not 24 hex digits", device=self.port)
        info = client.system_info(max(self._timeout, listening.MODULE_INFO_TIMEOUT))
        version = client.version(self._timeout)
        name = platform_name(info.platform_id) or f"platform-{info.platform_id}"
        mac = client.mac(self._timeout) if info.platform_id in listening.WIFI_PLATFORMS else None
        self._info = info
        self._identity = DeviceIdentity(
            device_id=reply.device_id.lower(),
            platform=name,
            platform_id=info.platform_id,
            mac=mac,
            firmware=version,
        )
        return self._identity

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        facts = [_module_facts(image) for image in images]
        identity = self._identity or self.identify()
        for image, fact in zip(images, facts, strict=True):
            if fact.platform_id != identity.platform_id:
                raise WrongTarget(
                    f"{image.name} is built for platform {fact.platform_id} "
                    f"({platform_name(fact.platform_id) or 'unknown'}), the device is {identity.platform}",
                    device=self._label,
                )
        for image in images:
            self._flash_one(image, progress)

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        facts = [_module_facts(image) for image in images]
        progress(Progress(Phase.VERIFY, 0, len(images)))
        info = self._client().system_info(max(self._timeout, listening.MODULE_INFO_TIMEOUT))
        self._info = info
        checks: list[ModuleCheck] = []
        for done, (image, fact) in enumerate(zip(images, facts, strict=True), start=1):
            report = info.find(fact.function, fact.index)
            what = f"{image.name}: module {listening.MODULE_FUNCTION_LETTERS.get(fact.function, '?')}{fact.index}"
            if report is None:
                raise VerifyMismatch(f"{what} is not on the device", device=self._label, address=image.address)
            if not report.valid:
                raise VerifyMismatch(
                    f"{what} failed the device's own checks (vc={report.validity_checked} vv={report.validity_result})",
                    device=self._label,
                    address=image.address,
                )
            if report.version != fact.version:
                raise VerifyMismatch(
                    f"{what} is version {report.version} on the device, {fact.version} in the image",
                    device=self._label,
                    address=image.address,
                )
            if report.sha256 is not None and report.sha256 != fact.sha256:
                raise VerifyMismatch(
                    f"{what} on the device has SHA-256 {report.sha256[:16]}..., the image {fact.sha256[:16]}...",
                    device=self._label,
                    address=image.address,
                )
            checks.append(ModuleCheck(image.name, fact.function, fact.index, fact.version, report.sha256 is not None))
            progress(Progress(Phase.VERIFY, done, len(images), image=image.name))
        self.last_verification = tuple(checks)

    def restart(self) -> None:
        """Leave listening mode (``x``): the application runs. A link that drops meanwhile is fine."""
        with contextlib.suppress(DeviceDisconnected):
            self._stream().write(b"x")
        self.close()

    def running_firmware(self) -> str | None:
        if not self.last_verification or self._info is None:
            return None
        apps = [c for c in self.last_verification if c.function == 5]
        check = apps[0] if apps else self.last_verification[-1]
        report = self._info.find(check.function, check.index)
        sha = f" sha256 {report.sha256}" if report and report.sha256 else ""
        version = self._identity.firmware if self._identity else None
        system = f"; Device OS {version}" if version else ""
        return f"{check.image} (module v{check.version}{sha}){system}"

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    # -- internals ----------------------------------------------------------------------------------

    def _open(self) -> serial.Serial:
        """The open port, with the device answering in listening mode (entered by line coding if need be)."""
        if self._serial is None:
            try:
                port = self._open_serial(self.port, listening.CONSOLE_BAUD, timeout=self._timeout)
                # A line-coding change to 28800 puts Device OS in listening mode; going via 9600 makes
                # it a change even when the port was left at 28800.
                port.baudrate = listening.LISTENING_BAUD
            except (serial.SerialException, OSError, ValueError) as exc:
                raise _open_failure(exc, self.port) from None
            self._serial = port
            try:
                self._await_listening(port)
            except DeviceError:
                self.close()
                raise
        return self._serial

    def _await_listening(self, port: serial.Serial) -> None:
        """Probe with ``v`` until the console answers: entering listening mode takes the device a moment."""
        client = ListeningClient(
            SerialStream(port, self._label), device=self._label, batch_gap=self._batch_gap, clock=self._clock
        )
        deadline = self._clock() + max(self._timeout, _LISTENING_ENTRY)
        while True:
            try:
                client.version(min(_PROBE_TIMEOUT, self._timeout))
                return
            except (DeviceTimeout, listening.ReplyError) as exc:
                if self._clock() >= deadline:
                    raise DeviceTimeout(
                        f"device does not answer in listening mode ({exc.message})",
                        device=self._label,
                        hint="hold SETUP/MODE until it blinks blue, or check the port",
                    ) from None
            try:
                # Say it again, slowly enough to be seen as two changes.
                port.baudrate = listening.CONSOLE_BAUD
                self._sleep(_PROBE_TIMEOUT / 3)
                port.baudrate = listening.LISTENING_BAUD
            except (serial.SerialException, OSError, ValueError) as exc:
                raise DeviceDisconnected(f"serial port lost: {exc}", device=self._label) from None

    def _stream(self) -> SerialStream:
        return SerialStream(self._open(), self._label)

    def _client(self) -> ListeningClient:
        return ListeningClient(self._stream(), device=self._label, batch_gap=self._batch_gap, clock=self._clock)

    def _flash_one(self, image: FlashImage, progress: ProgressCallback) -> None:
        progress(Progress(Phase.WRITE, 0, image.size, image=image.name))
        stream = self._stream()
        # Device OS >= 6 answers 'f' with the prompt and then refuses; below 6 nothing need be awaited.
        major = _major_version(self._identity.firmware if self._identity else None)
        if major is not None and major >= 6:
            raise DeviceError(
                f"Device OS {self._identity.firmware if self._identity else major} removed YModem flashing",
                device=self._label,
                reason=Reason.REFUSED,
                hint="flash it over USB DFU instead (station enters DFU with the 14400-baud signal)",
            )
        client = ListeningClient(
            stream,
            device=self._label,
            batch_gap=self._batch_gap,
            removal_wait=0.0 if major is not None and major < 6 else 0.2,
            clock=self._clock,
        )
        client.start_flash(self._timeout)

        def report(done: int, total: int) -> None:
            progress(Progress(Phase.WRITE, done, total, image=image.name))

        try:
            ymodem.send_file(
                stream,
                Path(image.name).name or "binary",
                image.data,
                block_size=self._block,
                timeout=self._timeout,
                finish_timeout=self._finish_timeout,
                max_retries=self._retries,
                wait_for_start=False,
                wait_before_batch_end=False,
                progress=report,
                device=self._label,
            )
        except ymodem.TransferCancelled as exc:
            said = _excerpt(client.drain(0.3))
            raise ymodem.TransferCancelled(
                f"{image.name}: device cancelled the transfer" + (f": {said}" if said else ""),
                device=self._label,
                block=exc.block,
                address=exc.address,
                hint="the device refused the image or could not store it; it still runs its previous firmware",
            ) from None
        except DeviceDisconnected:
            self.close()
            raise
        progress(Progress(Phase.RESTART, 0, 1, image=image.name))
        self._await_restart(stream)
        progress(Progress(Phase.RESTART, 1, 1, image=image.name))

    def _await_restart(self, stream: SerialStream) -> None:
        """After an accepted image the device resets to apply it: wait until it answers again."""
        deadline = self._clock() + self._reconnect_timeout
        seen = bytearray()
        try:
            while _RESTARTING not in seen and self._clock() < deadline and len(seen) < 4096:
                chunk = stream.read(256, min(3.0, max(deadline - self._clock(), 0.0)))
                if not chunk:
                    break
                seen += chunk
        except DeviceDisconnected:
            pass  # the reset took the port with it, as it does on USB
        self.close()
        last_error: DeviceError | None = None
        while self._clock() < deadline:
            try:
                self._open()
                return
            except DeviceDisconnected as exc:
                last_error = exc
                self._sleep(0.2)  # the port re-enumerates after the reset
            except DeviceTimeout as exc:
                last_error = exc
        raise DeviceTimeout(
            f"device did not come back in listening mode within {self._reconnect_timeout:g} s after flashing"
            + (f" ({last_error.message})" if last_error else ""),
            device=self._label,
        )


def _major_version(version: str | None) -> int | None:
    head = (version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _excerpt(data: bytes) -> str:
    text = data.replace(b"\x18", b"").decode("utf-8", "replace")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:120]


def _open_failure(exc: BaseException, port: str) -> DeviceError:
    """Why a port did not open: no permission (say how to get it), else the port is gone."""
    text = str(exc)
    if "Permission denied" in text or "Errno 13" in text:
        return DeviceError(
            f"cannot open serial port: {exc}",
            device=port,
            hint="install udev/60-benchflash.rules into /etc/udev/rules.d and re-plug the board, "
            "or add yourself to the dialout group and log in again",
            reason=Reason.PERMISSION,
        )
    return DeviceDisconnected(f"cannot open serial port: {exc}", device=port)


def enter_dfu(port: str, *, serial_factory: SerialFactory = serial.Serial) -> None:
    """Ask a Device OS device on ``port`` to reboot into DFU mode: a line-coding change to 14400 baud."""
    try:
        link = serial_factory(port, listening.DFU_BAUD, timeout=1.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise _open_failure(exc, port) from None
    # The device resets as it sees the new rate; the port may already be gone.
    with contextlib.suppress(serial.SerialException, OSError):
        link.close()


def is_particle_port(vid: int | None, pid: int | None) -> bool:
    """A Particle device's normal-mode CDC port (an ID of this family's table)."""
    return FAMILY.usb_id(vid, pid) is not None


def find_serial_devices(
    *,
    comports: Callable[[], Sequence[object]] = list_ports.comports,
    timeout: float = 10.0,
) -> list[ParticleSerialDevice]:
    """Particle devices in normal or listening mode on serial ports (USB VID 0x2B04, PID 0xC0NN)."""
    found: list[ParticleSerialDevice] = []
    for info in comports():
        description = claim(seen_serial_port(info))
        if description is not None:
            found.append(open_serial(description, {"timeout": timeout}))
    return sorted(found, key=lambda d: d.port)


# ---- the family ---------------------------------------------------------------------------------


def seen_serial_port(info: object, slot: str | None = None) -> SeenPort:
    """What pyserial's ``ListPortInfo`` says about a port, before it is opened."""
    location = getattr(info, "location", None)
    return SeenPort(
        bus=Bus.SERIAL,
        location=str(location) if location else None,
        vid=getattr(info, "vid", None),
        pid=getattr(info, "pid", None),
        device=str(getattr(info, "device", "")) or None,
        usb_serial_number=getattr(info, "serial_number", None),
        description=getattr(info, "description", None),
        slot=slot,
    )


def _usb_ids() -> tuple[UsbId, ...]:
    """Normal-mode CDC ports (2b04:c0NN, particle-usb's table). The Core (1d50:607d) is left out:
    particle-cli never flashed it over serial, and it runs no module-based firmware to verify."""
    return tuple(
        UsbId(p.vid, p.normal_pid, f"Particle {p.display} (serial)", Mode.LISTENING)
        for p in PLATFORMS
        if p.platform_id != CORE.platform_id
    )


def claim(port: SeenPort) -> DeviceDescription | None:
    """A Particle board's CDC serial port: listening mode and YModem."""
    if port.bus is not Bus.SERIAL or port.device is None:
        return None
    usb_id = FAMILY.usb_id(port.vid, port.pid)
    if usb_id is None:
        return None
    return DeviceDescription(
        family=Family.PARTICLE_SERIAL,
        # The USB path alone: the same slot the USB source gives the same board.
        port_path=serial_slot(port, usb_id),
        mode=Mode.LISTENING,
        vid=usb_id.vid,
        pid=usb_id.pid,
        usb_serial_number=port.usb_serial_number,
        serial_port=port.device,
        location=port.location,
    )


def open_serial(description: DeviceDescription, options: Options) -> ParticleSerialDevice:
    """The device on ``description.serial_port``; nothing is opened until it is used."""
    if description.serial_port is None:
        raise InputError(f"{description.port_path}: no serial port to open")
    return ParticleSerialDevice(
        description.serial_port,
        port_path=description.port_path,
        usb_serial_number=description.usb_serial_number,
        vid=description.vid,
        pid=description.pid,
        description=description,
        **options,
    )


FAMILY = BoardFamily(
    key=Family.PARTICLE_SERIAL,
    title="Particle over its USB serial port (listening mode + YModem)",
    bus=Bus.SERIAL,
    firmware=FirmwareKind.PARTICLE,
    usb_ids=_usb_ids(),
    claims=claim,
    open=open_serial,
    accepts=accepts_particle_platform,
)
