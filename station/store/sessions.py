"""Whether the process that recorded an attempt still lives: an ``flock`` on a lock file per session.

The kernel drops the lock when the process dies, by ``kill -9`` or a power cut, so the next opener
can tell a crashed run's attempts (interrupt them) from a live run's (leave them alone) even when
the technician looks at ``station history`` while the line runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def sessions_folder(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-sessions")


class SessionLock:
    """Held for as long as this process may record attempts under ``session_id``."""

    def __init__(self, folder: Path, session_id: str) -> None:
        self.path = folder / f"{session_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing the descriptor drops the lock
        self._fd = None


def session_alive(folder: Path, session_id: str) -> bool:
    """True while some process holds the session's lock; a missing file means nobody does."""
    path = folder / f"{session_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # another user's station: never interrupt what we cannot check
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def forget_session(folder: Path, session_id: str) -> None:
    with contextlib.suppress(OSError):
        (folder / f"{session_id}.lock").unlink()
