"""Particle devices on USB: find them, flash them in DFU mode (DfuSe), switch normal-mode ones into DFU.

Works with whichever pyusb backend it is given (a simulated bus in tests) or the one pyusb finds
(libusb on a bench). Each image goes to the first alt setting whose memory map holds it (``kind
"dct"`` picks the DCT alt): the pages it covers are erased, the address pointer is set once and
blocks of ``wTransferSize`` follow with consecutive block numbers; verify reads it back with UPLOAD.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from firmware_tools.errors import FirmwareError
from firmware_tools.particle import ModuleFlags, parse_module
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
from station.devices.family import BoardFamily, Bus, FirmwareKind, Options, SeenPort, UsbId, accepts_particle_platform
from station.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    InputError,
    Reason,
    VerifyMismatch,
    WrongTarget,
)
from station.protocols.dfu import (
    DEFAULT_CONTROL_TIMEOUT_MS,
    DfuProtocolError,
    DfuSeClient,
    FunctionalDescriptor,
    UsbStall,
    find_functional_descriptor,
)
from station.protocols.memory_map import MemoryMap, MemoryMapError, parse_memory_map
from station.protocols.particle_usb import (
    DFU_MODE_REQUEST,
    PARTICLE_BREQUEST,
    PLATFORMS,
    SERVICE_MIN_WLENGTH,
    START_DFU_FLASHER_SERIAL_SPEED,
    SYSTEM_VERSION_REQUEST,
    VENDOR_IN,
    Platform,
    device_id_from_serial,
    platform_for_usb,
    send_service_request,
)

UDEV_HINT = "install udev/60-benchflash.rules into /etc/udev/rules.d, then re-plug the board"
_DFU_CLASS = (0xFE, 0x01, 0x02)
MODULE_PREFIX_SIZE = 24
_USER_PART, _SYSTEM_PART = 5, 4  # module functions
_FORMER_USER_PART = 0xD4000  # Gen3: where 128 KB user parts lived before Device OS 3.1 (dfu-dfuse.md §9.3)
_PREFIX_FLAGS_OFFSET = 9  # start LE32, end LE32, reserved u8, flags u8
_FALLBACK_TRANSFER_SIZE = 1024  # particle-usb's default when a device has no functional descriptor
# How often the bus is looked at while a board resets into its new firmware: the bootloader's
# countdown is 0.5 s, so a coarse poll would add most of a poll period to every job.
_REPORT_POLL = 0.05


# --------------------------------------------------------------------------- transport


def _usb_error(exc: usb.core.USBError, device: str | None, what: str | None = None) -> DeviceError:
    """The station's error for a libusb failure; ``what`` names the step when the caller will not."""
    suffix = f" ({what})" if what else ""
    if isinstance(exc, usb.core.USBTimeoutError) or exc.errno == errno.ETIMEDOUT:
        return DeviceTimeout(f"no answer from the device{suffix}", device=device)
    if exc.errno == errno.EPIPE:
        return UsbStall(f"request stalled{suffix}", device=device)
    if exc.errno in (errno.ENODEV, errno.EIO, errno.ENOENT):
        return DeviceDisconnected(f"device is gone from the bus{suffix}", device=device, hint="re-plug the board")
    if exc.errno == errno.EACCES:
        return DeviceError(f"permission denied{suffix}", device=device, hint=UDEV_HINT, reason=Reason.PERMISSION)
    return DeviceError(f"USB error: {exc.strerror}{suffix}", device=device)


class PyUsbTransport:
    """``ControlTransport`` over one ``usb.core.Device``."""

    def __init__(self, device: Any, *, name: str | None = None) -> None:
        self.device = device
        self.name = name

    def control_out(
        self, request_type: int, request: int, value: int, index: int, data: bytes, timeout_ms: int
    ) -> None:
        try:
            self.device.ctrl_transfer(request_type, request, value, index, data, timeout_ms)
        except usb.core.USBError as exc:
            raise _usb_error(exc, self.name) from exc

    def control_in(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int
    ) -> bytes:
        try:
            return bytes(self.device.ctrl_transfer(request_type, request, value, index, length, timeout_ms))
        except usb.core.USBError as exc:
            raise _usb_error(exc, self.name) from exc

    def set_alt_setting(self, interface: int, alt: int) -> None:
        try:
            self.device.set_interface_altsetting(interface, alt)
        except usb.core.USBError as exc:
            raise _usb_error(exc, self.name) from exc

    def claim(self, interface: int) -> None:
        try:
            usb.util.claim_interface(self.device, interface)
        except usb.core.USBError as exc:
            raise _usb_error(exc, self.name, f"claim interface {interface}") from exc

    def close(self) -> None:
        # A device that is already gone has nothing left to release.
        with contextlib.suppress(usb.core.USBError):
            usb.util.dispose_resources(self.device)


# --------------------------------------------------------------------------- discovery


def port_path_of(usb_device: Any) -> str:
    """Physical location like ``1-1.4`` (bus, then the hub port chain), as Linux and dfu-util name it."""
    ports = getattr(usb_device, "port_numbers", None)
    if ports:
        return f"{usb_device.bus}-{'.'.join(str(p) for p in ports)}"
    return f"{usb_device.bus}-0.{usb_device.address}"


def _read_string(usb_device: Any, index: int) -> str | None:
    if not index:
        return None
    try:
        text = usb.util.get_string(usb_device, index)
    except (usb.core.USBError, ValueError):
        return None
    return str(text) if text is not None else None


def _all_usb_devices(backend: object | None) -> list[Any]:
    try:
        return list(usb.core.find(find_all=True, backend=backend))
    except usb.core.NoBackendError:
        raise DeviceError(
            "no USB backend available to pyusb",
            hint="install libusb-1.0 (Debian: apt install libusb-1.0-0)",
            reason=Reason.NOT_FOUND,
        ) from None
    except usb.core.USBError as exc:
        raise _usb_error(exc, None, "list USB devices") from exc


@dataclass(frozen=True)
class FoundUsbDevice:
    """A Particle device seen on the bus: its pyusb device, platform, mode, location and serial string."""

    usb_device: Any
    platform: Platform
    dfu: bool
    port_path: str
    serial: str | None


def seen_usb_port(usb_device: Any, slot: str | None = None) -> SeenPort:
    """What a pyusb device is before it is opened (the descriptors the host already holds)."""
    return SeenPort(
        bus=Bus.USB,
        location=port_path_of(usb_device),
        vid=int(usb_device.idVendor),
        pid=int(usb_device.idProduct),
        slot=slot,
    )


def _particle_devices(backend: object | None) -> list[FoundUsbDevice]:
    found = []
    for usb_device in _all_usb_devices(backend):
        if claim(seen_usb_port(usb_device)) is None:
            continue
        known = platform_for_usb(usb_device.idVendor, usb_device.idProduct)
        assert known is not None  # claimed: its IDs are in the table
        platform, dfu = known
        serial = _read_string(usb_device, usb_device.iSerialNumber)
        found.append(FoundUsbDevice(usb_device, platform, dfu, port_path_of(usb_device), serial))
    return sorted(found, key=lambda f: f.port_path)


def find_dfu_devices(*, backend: object | None = None, **options: Any) -> list[ParticleDfuDevice]:
    """Every Particle device in DFU mode on the bus, ordered by port path. ``options`` go to each device."""
    return [
        ParticleDfuDevice(f.usb_device, f.platform, port_path=f.port_path, serial=f.serial, **options)
        for f in _particle_devices(backend)
        if f.dfu
    ]


def find_normal_mode_devices(*, backend: object | None = None, **options: Any) -> list[ParticleNormalModeDevice]:
    """Every Particle device running its firmware (USB PID 0xC0NN), ordered by port path."""
    return [
        ParticleNormalModeDevice(
            f.usb_device, f.platform, port_path=f.port_path, serial=f.serial, backend=backend, **options
        )
        for f in _particle_devices(backend)
        if not f.dfu
    ]


def wait_for_device(
    device_id: str,
    *,
    dfu: bool,
    backend: object | None = None,
    timeout: float = 10.0,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FoundUsbDevice | None:
    """Poll the bus for the device with ``device_id`` in DFU (or normal) mode; None after ``timeout``."""
    deadline = clock() + timeout
    while True:
        for found in _particle_devices(backend):
            if found.dfu == dfu and found.serial and device_id_from_serial(found.serial) == device_id:
                return found
        if clock() >= deadline:
            return None
        sleep(interval)


# --------------------------------------------------------------------------- DFU-mode device


def _device_id(serial: str | None, port_path: str) -> str:
    if serial is None:
        raise DeviceError(
            "cannot read the USB serial number (the device ID)",
            device=port_path,
            hint=UDEV_HINT,
            reason=Reason.PERMISSION,
        )
    device_id = device_id_from_serial(serial)
    if device_id is None:
        raise DeviceError(f"USB serial number {serial!r} holds no device ID", device=port_path)
    return device_id


@dataclass(frozen=True)
class AltSetting:
    """One DFU alternate setting: its number and parsed memory map."""

    alt: int
    memory: MemoryMap


class ParticleDfuDevice(Device):
    """A Particle device in DFU mode. Open lazily; one thread at a time."""

    def __init__(
        self,
        usb_device: Any,
        platform: Platform,
        *,
        port_path: str,
        serial: str | None,
        control_timeout_ms: int = DEFAULT_CONTROL_TIMEOUT_MS,
        max_poll_wait: float = 20.0,
        reenumerate_timeout: float = 10.0,
        backend: object | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        description: DeviceDescription | None = None,
    ) -> None:
        self.usb_device = usb_device
        self.platform = platform
        self.port_path = port_path
        self.serial = serial
        self._description = description  # what discovery said: kept, so describe() names the same slot
        self.control_timeout_ms = control_timeout_ms
        self.max_poll_wait = max_poll_wait
        self.reenumerate_timeout = reenumerate_timeout
        self._backend = backend if backend is not None else getattr(usb_device, "backend", None)
        self._clock = clock
        self._sleep = sleep
        self._transport: PyUsbTransport | None = None
        self._client: DfuSeClient | None = None
        self._alts: tuple[AltSetting, ...] | None = None
        self._functional: FunctionalDescriptor | None = None
        self._current_alt: int | None = None
        self._left = False
        self._reported: str | None = None  # what the device said after restart, asked once

    # ---- identity

    def describe(self) -> DeviceDescription:
        if self._description is not None:
            return dataclasses.replace(self._description, usb_serial_number=self.serial)
        return DeviceDescription(
            family=Family.PARTICLE_DFU,
            port_path=self.port_path,
            mode=Mode.DFU,
            vid=self.usb_device.idVendor,
            pid=self.usb_device.idProduct,
            usb_serial_number=self.serial,
        )

    def identify(self) -> DeviceIdentity:
        return DeviceIdentity(
            device_id=_device_id(self.serial, self.port_path),
            platform=self.platform.name,
            platform_id=self.platform.platform_id,
        )

    @property
    def name(self) -> str:
        return f"{self.platform.name} at {self.port_path}"

    # ---- opening

    def _open(self) -> DfuSeClient:
        if self._left:
            raise DeviceError("device has left DFU mode", device=self.name, hint="find it again after it re-enters DFU")
        if self._client is not None:
            return self._client
        transport = PyUsbTransport(self.usb_device, name=self.name)
        self._transport = transport
        transport.claim(0)  # opens the device first: a permission problem shows up here, named
        self._alts, self._functional = self._read_interfaces()
        transfer_size = self._functional.transfer_size if self._functional else _FALLBACK_TRANSFER_SIZE
        self._client = DfuSeClient(
            transport,
            interface=0,
            transfer_size=transfer_size,
            device=self.name,
            control_timeout_ms=self.control_timeout_ms,
            max_poll_wait=self.max_poll_wait,
            sleep=self._sleep,
            clock=self._clock,
        )
        return self._client

    def _read_interfaces(self) -> tuple[tuple[AltSetting, ...], FunctionalDescriptor | None]:
        alts: list[AltSetting] = []
        functional: FunctionalDescriptor | None = None
        try:
            configuration = self.usb_device[0]
            config_extra = bytes(getattr(configuration, "extra_descriptors", None) or b"")
            functional = find_functional_descriptor(config_extra)
            for interface in configuration:
                if (
                    interface.bInterfaceClass,
                    interface.bInterfaceSubClass,
                    interface.bInterfaceProtocol,
                ) != _DFU_CLASS or interface.bInterfaceNumber != 0:
                    continue
                if functional is None:
                    extra = bytes(getattr(interface, "extra_descriptors", None) or b"")
                    functional = find_functional_descriptor(extra)
                try:
                    text = usb.util.get_string(self.usb_device, interface.iInterface)
                except ValueError:  # pyusb: the device lists no language for its strings
                    text = None
                if text is None:
                    raise DfuProtocolError(
                        f"alt setting {interface.bAlternateSetting} has no memory map string", device=self.name
                    )
                try:
                    alts.append(AltSetting(interface.bAlternateSetting, parse_memory_map(str(text))))
                except MemoryMapError as exc:
                    raise DfuProtocolError(str(exc), device=self.name) from None
        except usb.core.USBError as exc:
            raise _usb_error(exc, self.name, "read descriptors") from exc
        if not alts:
            raise DfuProtocolError("device has no DFU interface", device=self.name)
        return tuple(alts), functional

    def alt_settings(self) -> tuple[AltSetting, ...]:
        self._open()
        assert self._alts is not None
        return self._alts

    def _select(self, client: DfuSeClient, alt: int) -> None:
        if self._current_alt != alt:
            client.set_alt_setting(alt)
            self._current_alt = alt
        client.go_idle()

    def alt_for(self, image: FlashImage) -> AltSetting:
        """The alt setting that holds ``image``: DCT for ``kind == "dct"``, else the first other that fits."""
        end = image.address + image.size
        # DCT and external/serial flash both start at 0 on some platforms: only kind "dct" means DCT.
        want_dct = image.kind == "dct"
        candidates = tuple(a for a in self.alt_settings() if is_dct_alt(a.memory.name) == want_dct)
        for alt in candidates:
            if alt.memory.protected and alt.memory.covers(image.address, image.size):
                raise DeviceError(
                    "device protection is on: its memory is not writable over DFU",
                    device=self.name,
                    address=image.address,
                    hint="flash it as a product device with service mode, or disable protection first",
                    reason=Reason.REFUSED,
                )
            if alt.memory.covers(image.address, image.size, writable=True):
                return alt
        raise WrongTarget(
            f"image {image.name} ({image.address:#010x}..{end:#010x}) does not fit any writable memory",
            device=self.name,
            address=image.address,
            hint="check the module's start address against this platform",
        )

    def _check_images(self, images: Sequence[FlashImage]) -> list[tuple[FlashImage, AltSetting]]:
        plan = []
        for given in images:
            if not given.data:
                raise InputError(f"image {given.name} is empty")
            image = _as_written_over_dfu(given)
            if image.platform_id is not None and image.platform_id != self.platform.platform_id:
                raise WrongTarget(
                    f"image {image.name} is for platform {image.platform_id}, "
                    f"device is {self.platform.name} ({self.platform.platform_id})",
                    device=self.name,
                )
            plan.append((image, self.alt_for(image)))
        return plan

    # ---- flash / verify / restart

    @contextlib.contextmanager
    def _session(self) -> Iterator[DfuSeClient]:
        try:
            yield self._open()
        except DeviceError:
            # Let go of the handle: a retry starts from a fresh claim, as after a re-plug.
            self.close()
            raise

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        with self._session() as client:
            plan = self._check_images(images)
            for image, alt in plan:
                self._select(client, alt.alt)
                if self.platform.generation == "gen3" and _needs_former_user_part_cleared(image):
                    self._clear_former_user_part(client, image, alt.memory)
                self._erase(client, image, alt.memory, progress)
                self._write(client, image, progress)

    def _clear_former_user_part(self, client: DfuSeClient, image: FlashImage, memory: MemoryMap) -> None:
        """Blank the 128 KB user part's old location (0xD4000) before a 256 KB app, as particle-cli
        does: an old app's header left there would be found by Device OS. Nothing to do when the
        new app itself covers that page."""
        if image.address <= _FORMER_USER_PART < image.address + image.size:
            return
        if not memory.covers(_FORMER_USER_PART, 4096, writable=True):
            return
        client.erase_page(_FORMER_USER_PART)

    def _erase(self, client: DfuSeClient, image: FlashImage, memory: MemoryMap, progress: ProgressCallback) -> None:
        erasable = [(page, size) for page, size in memory.pages(image.address, image.size) if _erasable(memory, page)]
        total = sum(size for _, size in erasable)
        done = 0
        progress(Progress(Phase.ERASE, 0, total, image.name))
        for page, size in erasable:
            client.erase_page(page)
            done += size
            progress(Progress(Phase.ERASE, done, total, image.name))

    def _write(self, client: DfuSeClient, image: FlashImage, progress: ProgressCallback) -> None:
        size = client.transfer_size
        per_block_pointer = self._functional is None  # unknown block size: never rely on the formula
        progress(Progress(Phase.WRITE, 0, image.size, image.name))
        if not per_block_pointer:
            client.set_address(image.address)
        for index, offset in enumerate(range(0, image.size, size)):
            chunk = image.data[offset : offset + size]
            address = image.address + offset
            if per_block_pointer:
                client.set_address(address)
            client.download_block(0 if per_block_pointer else index, chunk, address, index=index)
            progress(Progress(Phase.WRITE, offset + len(chunk), image.size, image.name))

    def _read_blocks(self, client: DfuSeClient, address: int, length: int) -> Iterator[tuple[int, int, bytes]]:
        """``(index, address, data)`` for each block of ``[address, address+length)``, read with UPLOAD."""
        size = client.transfer_size
        per_block_pointer = self._functional is None
        if not per_block_pointer:
            client.set_address(address)
            client.go_idle()
        for index, offset in enumerate(range(0, length, size)):
            want = min(size, length - offset)
            if per_block_pointer:
                client.set_address(address + offset)
                client.go_idle()
            data = client.upload_block(0 if per_block_pointer else index, want, address + offset, index=index)
            if len(data) != want:
                raise DfuProtocolError(
                    f"read block returned {len(data)} of {want} bytes",
                    device=self.name,
                    block=index,
                    address=address + offset,
                )
            yield index, address + offset, data

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        with self._session() as client:
            plan = self._check_images(images)
            for image, alt in plan:
                self._select(client, alt.alt)
                self._verify_one(client, image, progress)
            client.go_idle()

    def read(self, address: int, length: int, *, alt: int = 0) -> bytes:
        """Read ``length`` bytes from ``address`` of ``alt`` with UPLOAD."""
        with self._session() as client:
            self._select(client, alt)
            out = b"".join(data for _, _, data in self._read_blocks(client, address, length))
            client.go_idle()
            return out

    def _verify_one(self, client: DfuSeClient, image: FlashImage, progress: ProgressCallback) -> None:
        progress(Progress(Phase.VERIFY, 0, image.size, image.name))
        for index, address, data in self._read_blocks(client, image.address, image.size):
            offset = address - image.address
            expected = image.data[offset : offset + len(data)]
            if data != expected:
                at = next(i for i, (a, b) in enumerate(zip(data, expected, strict=True)) if a != b)
                raise VerifyMismatch(
                    f"verify {image.name}: reads {data[at]:#04x}, expected {expected[at]:#04x}",
                    device=self.name,
                    block=index,
                    address=address + at,
                    hint="flash the device again",
                )
            progress(Progress(Phase.VERIFY, offset + len(data), image.size, image.name))

    def restart(self) -> None:
        if self._left:
            return
        with self._session() as client:
            client.go_idle()
            client.leave()
        self._left = True
        self.close()

    def running_firmware(self) -> str | None:
        """After restart: "Device OS <version>" once the device shows up running, or "DFU mode" if the
        bootloader refused the firmware and came back in DFU mode; None if it did not reappear."""
        if not self._left or self.serial is None:
            return None
        if self._reported is None:
            self._reported = self._wait_for_report()
        return self._reported

    def confirm(self, images: Sequence[FlashImage]) -> bool | None:
        """False when the bootloader refused the new firmware and came back in DFU mode; otherwise
        None: a device that comes up running Device OS may still be in safe mode, which DFU cannot see."""
        return False if self.running_firmware() == "DFU mode" else None

    def _wait_for_report(self) -> str | None:
        assert self.serial is not None
        device_id = device_id_from_serial(self.serial)
        if device_id is None:
            return None
        deadline = self._clock() + self.reenumerate_timeout
        while True:
            for found in _particle_devices(self._backend):
                if found.serial and device_id_from_serial(found.serial) == device_id:
                    if found.dfu and _same_enumeration(found.usb_device, self.usb_device):
                        continue  # still the bootloader we left, counting down to its reset
                    if found.dfu:
                        return "DFU mode"
                    version = _system_version(found.usb_device, self.control_timeout_ms)
                    return f"Device OS {version}" if version else "running"
            if self._clock() >= deadline:
                return None
            self._sleep(_REPORT_POLL)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._client = None
        self._current_alt = None


# The DCT alt's name: "DCT Flash", or "DCD Flash" as the nRF52840 bootloaders of the Device OS 2.x
# era (around 2.3.1) call it (device-os bootloader/src/nRF52840/usbd_dfu_mal.h, DcdMal).
_DCT_ALT_NAMES = ("dct", "dcd")


def is_dct_alt(name: str) -> bool:
    """Whether an alt setting's memory-map name is the DCT's."""
    words = name.lower().split()
    return any(word in _DCT_ALT_NAMES for word in words)


def _needs_former_user_part_cleared(image: FlashImage) -> bool:
    """A Gen3 256 KB user part (index 2) built for Device OS >= 3.1.3 (particle-cli's rule, 3103)."""
    if image.module_function != _USER_PART or image.module_index != 2:
        return False
    try:
        module = parse_module(image.data)
    except FirmwareError:
        return False
    return any(d.function == _SYSTEM_PART and d.version >= 3103 for d in module.prefix.dependencies)


def _as_written_over_dfu(image: FlashImage) -> FlashImage:
    """What DFU writes for ``image``: a module flagged DROP_MODULE_INFO (a radio stack) goes without
    its 24-byte prefix, its payload at the module's start address, as particle-cli writes it."""
    if image.module_function is None or len(image.data) <= MODULE_PREFIX_SIZE:
        return image  # raw bytes, not a module: written as given
    flags = image.data[_PREFIX_FLAGS_OFFSET]
    start = int.from_bytes(image.data[:4], "little")
    if not flags & int(ModuleFlags.DROP_MODULE_INFO) or start != image.address:
        return image
    return dataclasses.replace(image, data=image.data[MODULE_PREFIX_SIZE:], sha256="")


def _same_enumeration(a: Any, b: Any) -> bool:
    """Same bus address: the host assigns a new one every time a device enumerates."""
    return bool((a.bus, a.address) == (b.bus, b.address))


def _erasable(memory: MemoryMap, page: int) -> bool:
    segment = memory.segment_at(page)
    return segment is not None and segment.erasable


def _system_version(usb_device: Any, timeout_ms: int) -> str | None:
    try:
        data = usb_device.ctrl_transfer(
            VENDOR_IN, PARTICLE_BREQUEST, 0, SYSTEM_VERSION_REQUEST, SERVICE_MIN_WLENGTH, timeout_ms
        )
    except usb.core.USBError:
        return None
    text = bytes(data).split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return text or None


# --------------------------------------------------------------------------- normal-mode device


class ParticleNormalModeDevice(Device):
    """A Particle device running its firmware on USB; flashing switches it into DFU mode first."""

    def __init__(
        self,
        usb_device: Any,
        platform: Platform,
        *,
        port_path: str,
        serial: str | None,
        backend: object | None = None,
        dfu_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        description: DeviceDescription | None = None,
        **dfu_options: Any,
    ) -> None:
        self.usb_device = usb_device
        self.platform = platform
        self.port_path = port_path
        self.serial = serial
        self._description = description
        self._backend = backend
        self.dfu_timeout = dfu_timeout
        self._clock = clock
        self._sleep = sleep
        self._dfu_options = dict(dfu_options, clock=clock, sleep=sleep)
        self._dfu: ParticleDfuDevice | None = None

    @property
    def name(self) -> str:
        return f"{self.platform.name} at {self.port_path}"

    def describe(self) -> DeviceDescription:
        if self._description is not None:
            return dataclasses.replace(self._description, usb_serial_number=self.serial)
        return DeviceDescription(
            family=Family.PARTICLE_DFU,
            port_path=self.port_path,
            mode=Mode.NORMAL,
            vid=self.usb_device.idVendor,
            pid=self.usb_device.idProduct,
            usb_serial_number=self.serial,
        )

    def identify(self) -> DeviceIdentity:
        version = None if self._dfu else _system_version(self.usb_device, DEFAULT_CONTROL_TIMEOUT_MS)
        return DeviceIdentity(
            device_id=_device_id(self.serial, self.port_path),
            platform=self.platform.name,
            platform_id=self.platform.platform_id,
            firmware=f"Device OS {version}" if version else None,
        )

    def enter_dfu(self) -> ParticleDfuDevice:
        """Send DFU_MODE (request 50) and wait for the same device ID to appear in DFU mode."""
        if self._dfu is not None:
            return self._dfu
        device_id = _device_id(self.serial, self.port_path)
        transport = PyUsbTransport(self.usb_device, name=self.name)
        try:
            send_service_request(
                transport, DFU_MODE_REQUEST, device=self.name, clock=self._clock, sleep=self._sleep, reset_ok=True
            )
        finally:
            transport.close()
        found = wait_for_device(
            device_id, dfu=True, backend=self._backend, timeout=self.dfu_timeout, clock=self._clock, sleep=self._sleep
        )
        if found is None:
            raise DeviceTimeout(
                f"device did not come back in DFU mode within {self.dfu_timeout:.0f} s",
                device=self.name,
                hint="hold MODE, tap RESET, release MODE when the LED blinks yellow",
            )
        described = self._description
        if described is not None:
            described = dataclasses.replace(
                described, mode=Mode.DFU, vid=int(found.usb_device.idVendor), pid=int(found.usb_device.idProduct)
            )
        self._dfu = ParticleDfuDevice(
            found.usb_device,
            found.platform,
            # The slot the board was found in: a source that names its own slots keeps its name.
            port_path=self.port_path if described is not None else found.port_path,
            serial=found.serial,
            backend=self._backend,
            description=described,
            **self._dfu_options,
        )
        return self._dfu

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        progress(Progress(Phase.CONNECT, 0, 1))
        dfu = self.enter_dfu()
        progress(Progress(Phase.CONNECT, 1, 1))
        dfu.flash(images, progress)

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        self.enter_dfu().verify(images, progress)

    def restart(self) -> None:
        if self._dfu is not None:
            self._dfu.restart()

    def running_firmware(self) -> str | None:
        return self._dfu.running_firmware() if self._dfu is not None else None

    def close(self) -> None:
        if self._dfu is not None:
            self._dfu.close()


# --------------------------------------------------------------------------- the serial-port trick


def enter_dfu_via_serial(port: str, *, serial_factory: Callable[..., Any] | None = None) -> None:
    """Open the device's CDC serial port at 14400 baud and close it: Device OS (up to 5.x at least)
    takes that line coding as a request to reset into DFU mode. Find it again with
    ``wait_for_device(device_id, dfu=True)``."""
    if serial_factory is None:
        import serial

        serial_factory = serial.Serial
    try:
        port_handle = serial_factory(port, baudrate=START_DFU_FLASHER_SERIAL_SPEED, timeout=1.0)
    except OSError as exc:  # serial.SerialException is an OSError
        raise DeviceError(f"cannot open {port} at {START_DFU_FLASHER_SERIAL_SPEED} baud: {exc}", device=port) from exc
    # The device resets as soon as the line coding is set; the port may already be gone.
    with contextlib.suppress(OSError):
        port_handle.close()


# --------------------------------------------------------------------------- the family


def read_usb_serial(usb_device: Any, where: str) -> str | None:
    """The USB serial-number string (Particle: the device ID). Opens the device; EACCES is a PERMISSION error."""
    index = getattr(usb_device, "iSerialNumber", 0)
    if not index:
        return None
    try:
        # Asked directly: pyusb's ``langids`` property would swallow a permission error into "no strings".
        langids = usb.util.get_langids(usb_device)
        if not langids:
            return None
        text = usb.util.get_string(usb_device, index, langids[0])
    except ValueError:
        return None
    except usb.core.USBError as exc:
        if exc.errno == errno.EACCES:
            raise DeviceError(
                "permission denied opening the USB device", device=where, hint=UDEV_HINT, reason=Reason.PERMISSION
            ) from None
        if exc.errno in (errno.ENODEV, errno.ENOENT, errno.EIO):
            raise DeviceDisconnected("device is gone from the bus", device=where, hint="re-plug the board") from None
        raise DeviceError(f"cannot read the USB serial number: {exc.strerror or exc}", device=where) from None
    return None if text is None else str(text)


def _usb_ids() -> tuple[UsbId, ...]:
    """Every platform's DFU-mode and normal-mode IDs (particle-usb's device table: DFU d0NN, normal c0NN)."""
    ids: list[UsbId] = []
    for p in PLATFORMS:
        ids.append(UsbId(p.vid, p.dfu_pid, f"Particle {p.display} DFU Mode", Mode.DFU))
        ids.append(UsbId(p.vid, p.normal_pid, f"Particle {p.display}", Mode.NORMAL))
    return tuple(ids)


USB_IDS = _usb_ids()


def claim(port: SeenPort) -> DeviceDescription | None:
    """A Particle board on the USB bus, in DFU or normal mode."""
    if port.bus is not Bus.USB or port.location is None:
        return None
    usb_id = FAMILY.usb_id(port.vid, port.pid)
    if usb_id is None:
        return None
    return DeviceDescription(
        family=Family.PARTICLE_DFU,
        port_path=port.slot or port.location,
        mode=usb_id.mode,
        vid=usb_id.vid,
        pid=usb_id.pid,
        usb_serial_number=port.usb_serial_number,
        location=port.location,
    )


def _now_at(description: DeviceDescription, backend: object | None) -> tuple[Any, Platform, bool]:
    """The Particle device on the description's USB port now (it may have re-enumerated since)."""
    where = description.location or description.port_path
    for usb_device in _all_usb_devices(backend):
        try:
            known = platform_for_usb(int(usb_device.idVendor), int(usb_device.idProduct))
            if known is not None and port_path_of(usb_device) == where:
                return usb_device, known[0], known[1]
        except Exception:  # one device vanishing mid-enumeration must not hide the one asked for
            continue
    raise DeviceDisconnected(
        "no Particle device on this port any more", device=description.port_path, hint="re-plug the board"
    )


def _connect(description: DeviceDescription, options: Options) -> ParticleDfuDevice | ParticleNormalModeDevice:
    backend = options.get("backend")
    usb_device, platform, dfu = _now_at(description, backend)
    serial = read_usb_serial(usb_device, f"{platform.name} at {description.port_path}")
    settings = {**options, "backend": backend}
    described = dataclasses.replace(
        description,
        mode=Mode.DFU if dfu else Mode.NORMAL,
        vid=int(usb_device.idVendor),
        pid=int(usb_device.idProduct),
        usb_serial_number=serial,
    )
    cls = ParticleDfuDevice if dfu else ParticleNormalModeDevice
    return cls(usb_device, platform, port_path=description.port_path, serial=serial, description=described, **settings)


def open_for_flashing(description: DeviceDescription, options: Options) -> Device:
    """The board in DFU mode: one in normal mode is asked to switch first (request 50)."""
    device = _connect(description, options)
    return device.enter_dfu() if isinstance(device, ParticleNormalModeDevice) else device


def peek(description: DeviceDescription, options: Options) -> Device:
    """The board as it is: a normal-mode one answers its identity over USB without resetting."""
    return _connect(description, options)


FAMILY = BoardFamily(
    key=Family.PARTICLE_DFU,
    title="Particle over USB (DFU/DfuSe; normal-mode boards switched with control request 50)",
    bus=Bus.USB,
    firmware=FirmwareKind.PARTICLE,
    usb_ids=USB_IDS,
    claims=claim,
    open=open_for_flashing,
    accepts=accepts_particle_platform,
    peek=peek,
)
