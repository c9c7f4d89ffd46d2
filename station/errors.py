"""The one exception family of the station: what failed, on which device, where, and what to do."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reason codes recorded with a failed attempt; stable strings that reports and MES rely on."""

    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"  # the device answered something the protocol does not allow
    DEVICE_STATUS = "device-status"  # the device reported an error status
    REFUSED = "refused"  # the device refused a block or an image
    VERIFY_MISMATCH = "verify-mismatch"
    WRONG_TARGET = "wrong-target"  # platform / chip does not match the bundle
    PERMISSION = "permission"
    NOT_FOUND = "not-found"
    BAD_INPUT = "bad-input"
    CLOUD = "cloud"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"
    SERIAL_IN_USE = "serial-in-use"  # the scanned serial number (or the board) is linked to another already


class StationError(Exception):
    """Base of every error the station raises on purpose.

    ``exit_code``: 1 when a device or a check failed, 2 for unusable input or usage.
    """

    exit_code: int = 1
    reason: Reason = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        block: int | None = None,
        address: int | None = None,
        hint: str | None = None,
        reason: Reason | None = None,
    ) -> None:
        self.message = message
        self.device = device
        self.block = block
        self.address = address
        self.hint = hint
        if reason is not None:
            self.reason = reason
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.device:
            parts.append(self.device)
        if self.block is not None:
            parts.append(f"block {self.block}")
        if self.address is not None:
            parts.append(f"address {self.address:#010x}")
        where = ", ".join(parts)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class DeviceError(StationError):
    """A device failed, vanished, or answered something it must not; ``reason`` says which."""

    reason = Reason.PROTOCOL


class DeviceTimeout(DeviceError):
    reason = Reason.TIMEOUT


class DeviceDisconnected(DeviceError):
    reason = Reason.DISCONNECTED


class VerifyMismatch(DeviceError):
    reason = Reason.VERIFY_MISMATCH


class WrongTarget(DeviceError):
    reason = Reason.WRONG_TARGET


class InputError(StationError):
    """Unusable input: a bad profile, bundle, option or file."""

    exit_code = 2
    reason = Reason.BAD_INPUT
