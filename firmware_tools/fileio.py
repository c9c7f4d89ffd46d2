"""Writing output files so that a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from firmware_tools.errors import FirmwareError, FormatError


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename.

    ``mode`` sets the permission bits before any byte is written (0o600 for private keys). Without
    it, a replaced file keeps its mode and a new one gets what ``open()`` would give it (0o666
    less the umask): the temporary file's private 0o600 must not leak into firmware and bundles
    that others have to read.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise FirmwareError("cannot write: it is a folder", file=str(target), hint="give a file name")
    final_mode = default_mode(target) if mode is None else mode
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FirmwareError(f"cannot write: {exc.strerror}", file=str(target)) from exc
    try:
        os.fchmod(fd, final_mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FirmwareError(f"cannot write: {exc.strerror}", file=str(target)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_regular_file(path: str | Path, limit: int, *, what: str = "file") -> bytes:
    """At most ``limit + 1`` bytes of ``path``, refusing anything but a regular file before reading.

    Opened non-blocking and checked on the open descriptor: a FIFO, a terminal or a device would
    otherwise block the read forever (or never end), and a check by name alone races a swap.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(
                f"not a regular file ({_file_type(st.st_mode)}); a {what} is read from a regular file only",
                file=str(p),
                hint="copy it to a file first",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read(limit + 1)
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def is_regular_file(path: str | Path) -> bool:
    """Whether ``path`` names a regular file (following symlinks), without opening it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def default_mode(target: Path) -> int:
    """The mode ``target`` keeps when it is replaced, or the one a new file gets (0o666 less the umask)."""
    try:
        st = target.stat()
    except OSError:
        return 0o666 & ~current_umask()
    return stat.S_IMODE(st.st_mode)


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (setting it races with threads)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old
