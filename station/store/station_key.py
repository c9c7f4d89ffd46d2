"""The station's own Ed25519 key, which signs the audit chain's head at the end of each run.

Generated on first use next to the registry (``station.key``, mode 0600) unless the profile names
another file; a key file readable by others is refused, as signing keys are everywhere else.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import InputError
from station.store.audit import SignedHead, head_message

KEY_FILENAME = "station.key"


def default_key_path(db_path: Path) -> Path:
    return db_path.parent / KEY_FILENAME


@dataclass(frozen=True)
class StationKey:
    path: Path
    private: Ed25519PrivateKey

    @property
    def public_hex(self) -> str:
        return public_hex(self.private.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _read(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"station key {path} is readable by group or others (mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"station key {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"station key {path} is not an Ed25519 key")
    return key


def load_or_create(path: Path) -> StationKey:
    """The key at ``path``, made (0600, atomically, never over an existing file) if there is none."""
    if path.exists():
        return StationKey(path, _read(path))
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now: use theirs
        return StationKey(path, _read(path))
    except OSError as exc:
        raise InputError(f"cannot create the station key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    return StationKey(path, key)


def load_public(path: Path) -> Ed25519PublicKey | None:
    """The station key's public half, or None when there is no key file (nothing was signed here)."""
    if not path.exists():
        return None
    return _read(path).public_key()


def head_checker(expected: Ed25519PublicKey | None) -> Callable[[SignedHead], str | None]:
    """A ``signature_ok`` for ``verify_chain``: the head's key must be the station's, its signature good."""

    def check(head: SignedHead) -> str | None:
        try:
            recorded = Ed25519PublicKey.from_public_bytes(bytes.fromhex(head.public_key))
        except ValueError:
            return "the recorded public key is not an Ed25519 key"
        if expected is not None and public_hex(expected) != head.public_key:
            return "signed by another key than this station's"
        try:
            recorded.verify(bytes.fromhex(head.signature), head_message(head.station_id, head.seq, head.hash))
        except (InvalidSignature, ValueError):
            return "the signature does not verify"
        return None

    return check
