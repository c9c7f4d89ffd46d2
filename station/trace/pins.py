"""PINs: hashed with Argon2id (argon2-cffi), and read without ever landing in shell history.

A PIN comes from ``--pin-file FILE`` (its first line; the file must not be readable by others),
else the environment variable ``BENCHFLASH_PIN`` (for scripts), else a hidden prompt on a
terminal. There is deliberately no ``--pin VALUE`` option: a value on the command line is kept in
shell history and shown in ``ps``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from station.errors import InputError

PIN_ENV = "BENCHFLASH_PIN"
MIN_PIN = 4
MAX_PIN = 64

# Modest cost: a bench PC signs in a few times a shift, and tests hash many PINs.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def check_pin(pin: str) -> str:
    if not MIN_PIN <= len(pin) <= MAX_PIN or not pin.isprintable():
        raise InputError(f"a PIN must be {MIN_PIN}-{MAX_PIN} printable characters")
    return pin


def hash_pin(pin: str) -> str:
    return _HASHER.hash(check_pin(pin))


def pin_matches(pin_hash: str, pin: str) -> bool:
    try:
        return _HASHER.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False


def read_pin_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(
                f"PIN file {path} is readable by group or others (mode {stat.S_IMODE(mode):o})",
                hint=f"chmod 600 {path}",
            )
        with path.open(encoding="utf-8") as fh:
            line = fh.readline(MAX_PIN + 2)
    except OSError as exc:
        raise InputError(f"cannot read PIN file {path}: {exc.strerror}") from None
    return line.rstrip("\r\n")


def obtain_pin(
    name: str,
    pin_file: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> str:
    """The PIN for ``name``: the file, else $BENCHFLASH_PIN, else a hidden prompt; InputError if none."""
    if pin_file is not None:
        return read_pin_file(pin_file)
    env = os.environ if environ is None else environ
    if env.get(PIN_ENV):
        return env[PIN_ENV]
    if interactive is None:
        interactive = sys.stdin.isatty()
    if interactive:
        if prompt is None:
            import getpass

            prompt = getpass.getpass
        return prompt(f"PIN for {name}: ")
    raise InputError(
        f"operator {name} needs a PIN", hint=f"type it at the prompt, or give --pin-file FILE or ${PIN_ENV}"
    )
