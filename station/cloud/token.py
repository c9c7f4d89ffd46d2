"""The access token: read from the environment variable the profile names or from a 0600 file, and
kept in a value that never shows itself in a repr, a log line, an event or an error message."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from station.cloud.config import CloudConfig
from station.cloud.errors import CloudConfigError

# Tokens are 40 hex characters today; newer formats may be longer, so only the bound is firm.
MAX_TOKEN_LENGTH = 1024
_MAX_TOKEN_FILE = 4096


@dataclass(frozen=True)
class AccessToken:
    """A bearer token. ``str()`` and ``repr()`` are redacted; ``reveal()`` is for the auth header only."""

    _value: str = field(repr=False)
    source: str  # where it came from, safe to show ("environment variable X", "file /p")

    def __post_init__(self) -> None:
        value = self._value
        if not value:
            raise CloudConfigError(f"the access token from {self.source} is empty", hint=_FIX)
        if len(value) > MAX_TOKEN_LENGTH:
            raise CloudConfigError(f"the access token from {self.source} is too long", hint=_FIX)
        # A token goes into an HTTP header: anything but visible ASCII would corrupt the request.
        if not all(33 <= ord(c) <= 126 for c in value):
            raise CloudConfigError(
                f"the access token from {self.source} contains spaces or non-ASCII characters", hint=_FIX
            )

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return f"<access token from {self.source}>"

    def __repr__(self) -> str:
        return f"AccessToken(source={self.source!r})"


_FIX = "create an API user token with the devices:import and devices:list scopes"


def token_from_env(name: str, environ: Mapping[str, str] | None = None) -> AccessToken:
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None or not value.strip():
        raise CloudConfigError(
            f"no access token: environment variable {name} is not set",
            hint=f"export {name}=<token>, or give a token file of mode 0600 with --token-file",
        )
    return AccessToken(value.strip(), source=f"environment variable {name}")


def token_from_file(path: Path) -> AccessToken:
    """Read a token file that only its owner can read; refuse a group/world-readable one with the fix."""
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the station; fstat refuses it below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CloudConfigError(f"{path}: token file not found", hint="check [cloud] token_file") from None
    except OSError as exc:
        raise CloudConfigError(f"{path}: cannot open token file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CloudConfigError(f"{path}: token file is not a regular file")
        if info.st_mode & 0o077:
            raise CloudConfigError(
                f"{path}: token file is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"run: chmod 600 {path}",
            )
        data = os.read(fd, _MAX_TOKEN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_TOKEN_FILE:
        raise CloudConfigError(f"{path}: token file is larger than {_MAX_TOKEN_FILE} bytes")
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CloudConfigError(f"{path}: token file is not ASCII text") from None
    return AccessToken(text, source=f"file {path}")


def load_token(config: CloudConfig, environ: Mapping[str, str] | None = None) -> AccessToken:
    """The token from ``config.token_file`` when one is named, else from ``config.token_env``."""
    if config.token_file is not None:
        return token_from_file(config.token_file)
    return token_from_env(config.token_env, environ)
