"""USB DFU 1.1 with ST's DfuSe extensions, as a client over a tiny control-transfer transport.

The host side of the state machine is explicit: every GETSTATUS answer is parsed into a
``StatusReply`` and ``recovery_for`` decides, without I/O, what brings the device back to idle.
``DfuSeClient`` drives a ``ControlTransport`` (pyusb in production, a script in tests) and turns
every failure into a ``DeviceError`` subclass naming the operation, block and address.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Protocol

from station.errors import DeviceDisconnected, DeviceError, DeviceTimeout, Reason

# bmRequestType for DFU class requests to an interface.
DFU_OUT = 0x21
DFU_IN = 0xA1
DFU_DESCRIPTOR_TYPE = 0x21
DFUSE_VERSION = 0x011A
DEFAULT_CONTROL_TIMEOUT_MS = 5000  # what dfu-util and particle-usb use

STATUS_REPLY = struct.Struct("<B3sBB")  # bStatus, bwPollTimeout (24-bit LE), bState, iString
FUNCTIONAL_DESCRIPTOR = struct.Struct("<BBBHHH")  # bLength, type, bmAttributes, detach, xfer, bcdDFU
DFUSE_COMMAND = struct.Struct("<BI")  # command byte, 32-bit little-endian address


class Request(IntEnum):
    DETACH = 0
    DNLOAD = 1
    UPLOAD = 2
    GETSTATUS = 3
    CLRSTATUS = 4
    GETSTATE = 5
    ABORT = 6


class State(IntEnum):
    APP_IDLE = 0
    APP_DETACH = 1
    DFU_IDLE = 2
    DFU_DNLOAD_SYNC = 3
    DFU_DNBUSY = 4
    DFU_DNLOAD_IDLE = 5
    DFU_MANIFEST_SYNC = 6
    DFU_MANIFEST = 7
    DFU_MANIFEST_WAIT_RESET = 8
    DFU_UPLOAD_IDLE = 9
    DFU_ERROR = 10


class Status(IntEnum):
    OK = 0x00
    ERR_TARGET = 0x01
    ERR_FILE = 0x02
    ERR_WRITE = 0x03
    ERR_ERASE = 0x04
    ERR_CHECK_ERASED = 0x05
    ERR_PROG = 0x06
    ERR_VERIFY = 0x07
    ERR_ADDRESS = 0x08
    ERR_NOTDONE = 0x09
    ERR_FIRMWARE = 0x0A
    ERR_VENDOR = 0x0B
    ERR_USBR = 0x0C
    ERR_POR = 0x0D
    ERR_UNKNOWN = 0x0E
    ERR_STALLEDPKT = 0x0F


STATUS_TEXT = {
    Status.OK: "no error",
    Status.ERR_TARGET: "file is not for this device",
    Status.ERR_FILE: "vendor file check failed",
    Status.ERR_WRITE: "cannot write memory",
    Status.ERR_ERASE: "erase failed",
    Status.ERR_CHECK_ERASED: "erase check failed",
    Status.ERR_PROG: "program failed",
    Status.ERR_VERIFY: "verify failed",
    Status.ERR_ADDRESS: "address out of range",
    Status.ERR_NOTDONE: "download ended before the data was complete",
    Status.ERR_FIRMWARE: "firmware corrupt, cannot run it",
    Status.ERR_VENDOR: "vendor error",
    Status.ERR_USBR: "unexpected USB reset",
    Status.ERR_POR: "unexpected power-on reset",
    Status.ERR_UNKNOWN: "unknown error",
    Status.ERR_STALLEDPKT: "device stalled an unexpected request",
}


def state_name(state: State) -> str:
    """dfu-util's spelling: ``dfuDNLOAD-IDLE``, ``appIDLE``."""
    prefix, _, rest = state.name.partition("_")
    return prefix.lower() + rest.replace("_", "-")


def status_name(status: Status) -> str:
    """dfu-util's spelling: ``OK``, ``errPROG``."""
    return "OK" if status is Status.OK else "err" + status.name.removeprefix("ERR_")


class DfuseCommand(IntEnum):
    GET_COMMANDS = 0x00
    SET_ADDRESS = 0x21
    ERASE = 0x41
    READ_UNPROTECT = 0x92
    ENTER_SAFE_MODE = 0xFA  # Particle extension
    CLEAR_SECURITY_MODE_OVERRIDE = 0xFB  # Particle extension


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class StatusReply:
    """A parsed GETSTATUS answer."""

    status: Status
    poll_timeout_ms: int
    state: State
    string_index: int

    @classmethod
    def parse(cls, data: bytes) -> StatusReply:
        """Parse six bytes; anything else is a ``DfuProtocolError``."""
        if len(data) != STATUS_REPLY.size:
            raise DfuProtocolError(f"GETSTATUS answered {len(data)} bytes instead of 6")
        status, poll, state, string_index = STATUS_REPLY.unpack(data)
        try:
            return cls(Status(status), int.from_bytes(poll, "little"), State(state), string_index)
        except ValueError:
            raise DfuProtocolError(
                f"GETSTATUS answered status {status:#04x} state {state:#04x}, which DFU does not define"
            ) from None

    def pack(self) -> bytes:
        return STATUS_REPLY.pack(self.status, self.poll_timeout_ms.to_bytes(3, "little"), self.state, self.string_index)


@dataclass(frozen=True)
class FunctionalDescriptor:
    """The DFU functional descriptor (type 0x21) of a DFU interface."""

    attributes: int
    detach_timeout_ms: int
    transfer_size: int
    dfu_version: int

    @property
    def can_download(self) -> bool:
        return bool(self.attributes & 0x01)

    @property
    def can_upload(self) -> bool:
        return bool(self.attributes & 0x02)

    @property
    def manifestation_tolerant(self) -> bool:
        return bool(self.attributes & 0x04)

    @property
    def will_detach(self) -> bool:
        return bool(self.attributes & 0x08)

    @property
    def is_dfuse(self) -> bool:
        return self.dfu_version == DFUSE_VERSION

    def pack(self) -> bytes:
        return FUNCTIONAL_DESCRIPTOR.pack(
            FUNCTIONAL_DESCRIPTOR.size,
            DFU_DESCRIPTOR_TYPE,
            self.attributes,
            self.detach_timeout_ms,
            self.transfer_size,
            self.dfu_version,
        )


def find_functional_descriptor(extra: bytes) -> FunctionalDescriptor | None:
    """Walk the descriptors in an interface's or configuration's extra bytes for the DFU one."""
    offset = 0
    while offset + 2 <= len(extra):
        length, kind = extra[offset], extra[offset + 1]
        if length < 2:
            return None
        if kind == DFU_DESCRIPTOR_TYPE:
            body = extra[offset : offset + length]
            if length >= FUNCTIONAL_DESCRIPTOR.size and len(body) >= FUNCTIONAL_DESCRIPTOR.size:
                _, _, attributes, detach, transfer, version = FUNCTIONAL_DESCRIPTOR.unpack_from(body)
                return FunctionalDescriptor(attributes, detach, transfer, version)
            if length >= 7 and len(body) >= 7:  # DFU 1.0: no bcdDFUVersion
                attributes, detach, transfer = struct.unpack_from("<BHH", body, 2)
                return FunctionalDescriptor(attributes, detach, transfer, 0x0100)
            return None
        offset += length
    return None


# --------------------------------------------------------------------------- errors


class DfuProtocolError(DeviceError):
    """The device answered something DFU does not allow."""

    reason = Reason.PROTOCOL


class DfuStatusError(DeviceError):
    """The device reported an error status (``status``) for an operation."""

    reason = Reason.DEVICE_STATUS

    def __init__(
        self,
        message: str,
        *,
        status: Status,
        state: State,
        device: str | None = None,
        block: int | None = None,
        address: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.state = state
        super().__init__(message, device=device, block=block, address=address, hint=hint)


class DfuBlockRefused(DeviceError):
    """The device refused (stalled) a data block."""

    reason = Reason.REFUSED


class UsbStall(DeviceError):
    """The device stalled a control request (USB PIPE error). Transports raise this."""

    reason = Reason.PROTOCOL


# --------------------------------------------------------------------------- transport


class ControlTransport(Protocol):
    """Control transfers on endpoint 0. Raise ``UsbStall``, ``DeviceTimeout`` or ``DeviceDisconnected``."""

    def control_out(
        self, request_type: int, request: int, value: int, index: int, data: bytes, timeout_ms: int
    ) -> None: ...

    def control_in(
        self, request_type: int, request: int, value: int, index: int, length: int, timeout_ms: int
    ) -> bytes: ...

    def set_alt_setting(self, interface: int, alt: int) -> None: ...


# --------------------------------------------------------------------------- host state machine


class Recovery(Enum):
    """What the host does next, given the device's status, to reach dfuIDLE."""

    NONE = "none"  # dfuIDLE with status OK
    WAIT = "wait"  # busy finishing earlier work (dfuDNBUSY): poll again after bwPollTimeout
    CLRSTATUS = "clrstatus"
    ABORT = "abort"
    FAIL = "fail"  # application mode, or a state no request leads out of


def recovery_for(reply: StatusReply) -> Recovery:
    """dfu-util's start-up normalisation as a pure decision."""
    if reply.state is State.DFU_ERROR:
        return Recovery.CLRSTATUS
    if reply.state in (
        State.DFU_DNLOAD_SYNC,
        State.DFU_DNLOAD_IDLE,
        State.DFU_MANIFEST_SYNC,
        State.DFU_UPLOAD_IDLE,
    ):
        return Recovery.ABORT
    if reply.state is State.DFU_IDLE:
        return Recovery.NONE if reply.status is Status.OK else Recovery.CLRSTATUS
    if reply.state is State.DFU_DNBUSY:
        return Recovery.WAIT
    return Recovery.FAIL


class Poll(Enum):
    """What a status seen while waiting for a download or command to finish means."""

    WAIT = "wait"  # still busy: sleep bwPollTimeout and ask again
    DONE = "done"
    ERROR = "error"  # the device reports an error status
    UNEXPECTED = "unexpected"  # a state the operation cannot lead to


def poll_outcome(reply: StatusReply) -> Poll:
    """Classify a status seen after a DNLOAD (data block or DfuSe command)."""
    if reply.status is not Status.OK or reply.state is State.DFU_ERROR:
        return Poll.ERROR
    if reply.state in (State.DFU_DNBUSY, State.DFU_DNLOAD_SYNC):
        return Poll.WAIT
    if reply.state is State.DFU_DNLOAD_IDLE:
        return Poll.DONE
    return Poll.UNEXPECTED


def leave_outcome(reply: StatusReply) -> Poll:
    """After the zero-length DNLOAD: manifestation (Gen3) or the Gen2 DNLOAD-IDLE quirk is success."""
    if reply.status is not Status.OK or reply.state is State.DFU_ERROR:
        return Poll.ERROR
    if reply.state in (State.DFU_MANIFEST, State.DFU_MANIFEST_WAIT_RESET, State.DFU_DNLOAD_IDLE):
        return Poll.DONE
    if reply.state is State.DFU_MANIFEST_SYNC:
        return Poll.WAIT
    return Poll.UNEXPECTED


# --------------------------------------------------------------------------- client


@dataclass
class _PollBudget:
    """How long one operation has been waiting for the device, and how often it asked."""

    started: float
    asked: float = 0.0
    polls: int = 0


@dataclass(frozen=True)
class Where:
    """Where an operation was, for error messages."""

    what: str
    block: int | None = None
    address: int | None = None


class DfuSeClient:
    """DfuSe host operations on one DFU interface. Not thread-safe: one client per device."""

    def __init__(
        self,
        transport: ControlTransport,
        *,
        interface: int = 0,
        transfer_size: int = 4096,
        device: str | None = None,
        control_timeout_ms: int = DEFAULT_CONTROL_TIMEOUT_MS,
        max_poll_wait: float = 20.0,
        max_polls: int = 10_000,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= transfer_size <= 0xFFFF:
            raise DfuProtocolError(f"transfer size {transfer_size} is not usable", device=device)
        self.transport = transport
        self.interface = interface
        self.transfer_size = transfer_size
        self.device = device
        self.control_timeout_ms = control_timeout_ms
        self.max_poll_wait = max_poll_wait
        self.max_polls = max_polls
        self._sleep = sleep
        self._clock = clock
        self.last_status: StatusReply | None = None

    # ---- raw requests

    def _out(self, request: Request, value: int, data: bytes, where: Where) -> None:
        try:
            self.transport.control_out(DFU_OUT, request, value, self.interface, data, self.control_timeout_ms)
        except DeviceError as exc:
            raise self._located(exc, where, request.name) from exc

    def _in(self, request: Request, value: int, length: int, where: Where) -> bytes:
        try:
            return self.transport.control_in(DFU_IN, request, value, self.interface, length, self.control_timeout_ms)
        except DeviceError as exc:
            raise self._located(exc, where, request.name) from exc

    def _located(self, exc: DeviceError, where: Where, request: str) -> DeviceError:
        """The same kind of error, now saying which operation, request, block and address it hit."""
        message = f"{where.what}: {exc.message} ({request})"
        try:
            return type(exc)(message, device=self.device, block=where.block, address=where.address, hint=exc.hint)
        except TypeError:  # a subclass with extra required fields: keep its kind in the reason
            return DeviceError(
                message,
                device=self.device,
                block=where.block,
                address=where.address,
                hint=exc.hint,
                reason=exc.reason,
            )

    def get_status(self, where: Where | None = None) -> StatusReply:
        where = where or Where("GETSTATUS")
        data = self._in(Request.GETSTATUS, 0, STATUS_REPLY.size, where)
        try:
            reply = StatusReply.parse(data)
        except DfuProtocolError as exc:
            raise DfuProtocolError(
                f"{where.what}: {exc.message}", device=self.device, block=where.block, address=where.address
            ) from None
        self.last_status = reply
        return reply

    def get_state(self) -> State:
        data = self._in(Request.GETSTATE, 0, 1, Where("GETSTATE"))
        if len(data) != 1:
            raise DfuProtocolError(f"GETSTATE answered {len(data)} bytes", device=self.device)
        try:
            return State(data[0])
        except ValueError:
            raise DfuProtocolError(f"GETSTATE answered state {data[0]:#04x}", device=self.device) from None

    def clear_status(self) -> None:
        self._out(Request.CLRSTATUS, 0, b"", Where("CLRSTATUS"))

    def abort(self) -> None:
        self._out(Request.ABORT, 0, b"", Where("ABORT"))

    def set_alt_setting(self, alt: int) -> None:
        try:
            self.transport.set_alt_setting(self.interface, alt)
        except DeviceError as exc:
            raise self._located(exc, Where(f"select alt setting {alt}"), "SET_INTERFACE") from exc

    # ---- state handling

    def _sleep_poll(self, reply: StatusReply, budget: _PollBudget, where: Where) -> None:
        """Wait bwPollTimeout before the next GETSTATUS, within the operation's time and poll budget."""
        delay = reply.poll_timeout_ms / 1000.0
        budget.polls += 1
        spent = max(budget.asked, self._clock() - budget.started)
        if spent + delay > self.max_poll_wait or budget.polls > self.max_polls:
            raise DeviceTimeout(
                f"{where.what}: device still busy after {budget.polls} status requests ({spent:.1f} s) "
                f"and asks to wait {delay:.1f} s more (limit {self.max_poll_wait:.0f} s)",
                device=self.device,
                block=where.block,
                address=where.address,
                hint="re-plug the board and flash again",
            )
        if delay > 0:
            self._sleep(delay)
        budget.asked += delay

    def go_idle(self) -> StatusReply:
        """Bring the device to dfuIDLE with status OK (CLRSTATUS / ABORT as needed)."""
        where = Where("reach dfuIDLE")
        budget = _PollBudget(self._clock())
        for _ in range(6):
            try:
                reply = self.get_status(where)
            except UsbStall:
                # A stalled GETSTATUS leaves the device in dfuERROR on some bootloaders; clear it.
                self.clear_status()
                continue
            action = recovery_for(reply)
            if action is Recovery.NONE:
                return reply
            if action is Recovery.FAIL:
                if reply.state in (State.APP_IDLE, State.APP_DETACH):
                    raise DfuProtocolError(
                        "device is in run-time mode, not DFU mode",
                        device=self.device,
                        hint="switch it into DFU mode first",
                    )
                raise DfuProtocolError(
                    f"device is in state {state_name(reply.state)} and cannot be brought back to dfuIDLE",
                    device=self.device,
                    hint="re-plug the board and flash again",
                )
            if reply.poll_timeout_ms:
                self._sleep_poll(reply, budget, where)
            if action is Recovery.WAIT:
                continue
            if action is Recovery.CLRSTATUS:
                self.clear_status()
            else:
                self.abort()
        raise DfuProtocolError("device did not reach dfuIDLE after 6 attempts", device=self.device)

    def _raise_status(self, reply: StatusReply, where: Where) -> None:
        """Report ``reply``'s error after clearing it so the device can be used again."""
        if reply.state is State.DFU_ERROR:
            # The error being reported is the one that matters, not a failure to clear it.
            with contextlib.suppress(DeviceError):
                self.clear_status()
        text = STATUS_TEXT.get(reply.status, "error")
        raise DfuStatusError(
            f"{where.what}: device reports {status_name(reply.status)} ({text}) in state {state_name(reply.state)}",
            status=reply.status,
            state=reply.state,
            device=self.device,
            block=where.block,
            address=where.address,
        )

    def _wait_done(self, where: Where, *, first_must_be_busy: bool = False) -> StatusReply:
        budget = _PollBudget(self._clock())
        first = True
        while True:
            reply = self.get_status(where)
            outcome = poll_outcome(reply)
            if first and first_must_be_busy and outcome is Poll.DONE:
                # AN2662: the status right after a DfuSe command must report dfuDNBUSY.
                raise DfuProtocolError(
                    f"{where.what}: device reports {state_name(reply.state)} instead of dfuDNBUSY",
                    device=self.device,
                    block=where.block,
                    address=where.address,
                )
            first = False
            if outcome is Poll.DONE:
                return reply
            if outcome is Poll.ERROR:
                self._raise_status(reply, where)
            if outcome is Poll.UNEXPECTED:
                raise DfuProtocolError(
                    f"{where.what}: device went to state {state_name(reply.state)}",
                    device=self.device,
                    block=where.block,
                    address=where.address,
                )
            self._sleep_poll(reply, budget, where)

    def _download(self, value: int, data: bytes, where: Where) -> None:
        try:
            self._out(Request.DNLOAD, value, data, where)
        except UsbStall as exc:
            raise self._refused(where, "request") from exc

    def _refused(self, where: Where, what: str) -> DfuBlockRefused:
        """After a stall: read and clear the device's error, and say what it was."""
        detail = ""
        reply = self._status_after_stall(where)
        if reply is not None:
            if reply.status is not Status.OK:
                detail = f"; status {status_name(reply.status)} ({STATUS_TEXT[reply.status]})"
            if reply.state is State.DFU_ERROR:
                with contextlib.suppress(DeviceError):
                    self.clear_status()
        return DfuBlockRefused(
            f"{where.what}: device refused the {what} (USB stall{detail})",
            device=self.device,
            block=where.block,
            address=where.address,
        )

    def _status_after_stall(self, where: Where) -> StatusReply | None:
        try:
            return self.get_status(where)
        except DeviceError:
            return None

    # ---- DfuSe operations

    def command(self, command: DfuseCommand, address: int | None, where: Where) -> None:
        payload = bytes([command]) if address is None else DFUSE_COMMAND.pack(command, address)
        self._download(0, payload, where)
        self._wait_done(where, first_must_be_busy=True)

    def set_address(self, address: int) -> None:
        self.command(DfuseCommand.SET_ADDRESS, address, Where("set address", address=address))

    def erase_page(self, address: int) -> None:
        self.command(DfuseCommand.ERASE, address, Where("erase page", address=address))

    def download_block(self, block: int, data: bytes, address: int, *, index: int | None = None) -> None:
        """Write one block: wValue = ``block + 2``; ``address`` and ``index`` only name it in errors."""
        if not data:
            raise DfuProtocolError("a data block must not be empty", device=self.device)
        if len(data) > self.transfer_size:
            raise DfuProtocolError(
                f"block of {len(data)} bytes exceeds the transfer size {self.transfer_size}",
                device=self.device,
            )
        where = Where("write block", block=block if index is None else index, address=address)
        self._download(block + 2, data, where)
        self._wait_done(where)

    def upload_block(self, block: int, length: int, address: int, *, index: int | None = None) -> bytes:
        """Read one block: wValue = ``block + 2`` from the address pointer."""
        where = Where("read block", block=block if index is None else index, address=address)
        try:
            return self._in(Request.UPLOAD, block + 2, length, where)
        except UsbStall as exc:
            raise self._refused(where, "upload") from exc

    def get_commands(self) -> bytes:
        self.go_idle()
        data = self._in(Request.UPLOAD, 0, 64, Where("get commands"))
        self.abort()
        return data

    def leave(self) -> bool:
        """Zero-length DNLOAD, then status: True once the device manifests or resets.

        A device that drops off the bus after the request is doing what it was asked: it resets
        into the new firmware. That includes one that re-enumerates before it answers: the request
        itself then fails as the device leaves the bus, or a status request goes unanswered while
        it resets (device-os 599, particle-cli 434: dfu-util's "Error during download get_status"
        after a successful flash). Whether the new firmware runs is the caller's next question
        (``ParticleDfuDevice.running_firmware``). A device that answers with an error is an error.
        """
        where = Where("leave DFU mode")
        try:
            self._out(Request.DNLOAD, 2, b"", where)
        except DeviceDisconnected:
            return True  # gone from the bus with the request: it is resetting
        budget = _PollBudget(self._clock())
        while True:
            try:
                reply = self.get_status(where)
            except (DeviceDisconnected, UsbStall, DeviceTimeout):
                # No answer at all to a status request (a timeout, not a poll budget running out):
                # the device is re-enumerating.
                return True
            outcome = leave_outcome(reply)
            if outcome is Poll.DONE:
                return True
            if outcome is Poll.ERROR:
                self._raise_status(reply, where)
            if outcome is Poll.UNEXPECTED:
                raise DfuProtocolError(
                    f"{where.what}: device went to state {state_name(reply.state)}", device=self.device
                )
            self._sleep_poll(reply, budget, where)
