"""The one exception family of firmware_tools: what failed, where, and what to do about it."""

from __future__ import annotations


class FirmwareError(Exception):
    """Base of every error firmware_tools raises on purpose.

    ``exit_code`` is what a command line should exit with: 2 for unusable input (the default),
    1 for a check that ran and failed.
    """

    exit_code: int = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.offset = offset
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The error as one line: where, what, and what to do."""
        where = ""
        if self.file is not None:
            where = self.file
            if self.offset is not None:
                where += f" at offset {self.offset:#x}"
            where += ": "
        elif self.offset is not None:
            where = f"at offset {self.offset:#x}: "
        text = where + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def with_file(self, file: str) -> FirmwareError:
        """Attach a file name to an error raised while reading bytes that came from ``file``."""
        if self.file is None:
            self.file = file
            self.args = (self.one_line(),)
        return self


class FormatError(FirmwareError):
    """The bytes are not a well-formed instance of the format they claim to be."""


class UnsupportedError(FirmwareError):
    """The input is well-formed, but the asked operation cannot be done on it (and why)."""


class CheckFailed(FirmwareError):
    """A verification ran and failed (bad signature, hash mismatch, wrong product)."""

    exit_code = 1
