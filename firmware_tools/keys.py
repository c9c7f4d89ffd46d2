"""Signing keys for release bundles: generate, store, load, sign and verify (Ed25519 or ECDSA P-256).

Private key material never leaves this module as text: errors name the file, never its content,
and ``SigningKey`` does not show its key in ``repr``.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware_tools.errors import FirmwareError, FormatError
from firmware_tools.fileio import write_atomic

# Key files are a few hundred bytes; anything much larger is not a key and is not read whole.
MAX_KEY_FILE_BYTES = 64 * 1024
# Hex digits of SHA-256(SubjectPublicKeyInfo DER) that name a key: short to read, long enough
# that two keys of one organisation never collide.
KEY_ID_HEX_DIGITS = 16
PRIVATE_KEY_MODE = 0o600
PUBLIC_KEY_MODE = 0o644


class KeyAlgorithm(enum.Enum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class InsecureKeyFile(FirmwareError):
    """A private key file that group or others can read: refused for signing."""


_PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
_PublicKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _algorithm_of(key: _PublicKey) -> KeyAlgorithm:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(key.curve, ec.SECP256R1):
        return KeyAlgorithm.ECDSA_P256
    raise FormatError(f"ECDSA key on curve {key.curve.name}; only P-256 (secp256r1) is supported")


def _spki_der(key: _PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_of(key: _PublicKey) -> str:
    """The short name of a public key: the first hex digits of SHA-256 over its SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki_der(key)).hexdigest()[:KEY_ID_HEX_DIGITS]


@dataclass(frozen=True)
class PublicKey:
    """A public key that can check bundle signatures."""

    algorithm: KeyAlgorithm
    key_id: str
    key: _PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, key: _PublicKey) -> PublicKey:
        return cls(_algorithm_of(key), key_id_of(key), key)

    def pem(self) -> bytes:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return self.key.public_bytes(serialization.Encoding.PEM, spki)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's signature of exactly ``message``."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, message)
            else:
                self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key loaded for signing. Its material is never shown (``repr`` hides it)."""

    algorithm: KeyAlgorithm
    public: PublicKey
    key: _PrivateKey = field(repr=False, compare=False)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        """The raw signature of ``message``: 64 bytes for Ed25519, DER (r, s) for ECDSA P-256."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(message)
        return self.key.sign(message, ec.ECDSA(hashes.SHA256()))


PublicKeyLike: TypeAlias = PublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | Path


def as_public_key(value: PublicKeyLike) -> PublicKey:
    """A ``PublicKey`` from a loaded key, a cryptography key object or the path of a .pub file."""
    if isinstance(value, PublicKey):
        return value
    if isinstance(value, Path):
        return load_public_key(value)
    if isinstance(value, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        return PublicKey.from_key(value)
    raise TypeError(f"not a public key: {type(value).__name__}")


def as_public_keys(values: Sequence[PublicKeyLike]) -> tuple[PublicKey, ...]:
    return tuple(as_public_key(v) for v in values)


def generate_key(algorithm: KeyAlgorithm = KeyAlgorithm.ED25519) -> SigningKey:
    """A fresh key pair (randomness from the operating system, as cryptography draws it)."""
    private: _PrivateKey
    if algorithm is KeyAlgorithm.ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(algorithm, PublicKey.from_key(private.public_key()), private)


def private_key_pem(key: SigningKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of the private key, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@dataclass(frozen=True)
class KeyFiles:
    """Where ``write_key_pair`` put the two halves of a key."""

    private_path: Path
    public_path: Path
    key_id: str
    algorithm: KeyAlgorithm


def key_paths(base: str | Path) -> tuple[Path, Path]:
    """``NAME.key`` and ``NAME.pub`` for ``--out NAME`` (a trailing .key or .pub on NAME is dropped)."""
    p = Path(base)
    if p.suffix in (".key", ".pub"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".key"), p.with_name(p.name + ".pub")


def write_key_pair(
    key: SigningKey, base: str | Path, *, passphrase: bytes | None = None, overwrite: bool = False
) -> KeyFiles:
    """Write ``NAME.key`` (PEM, mode 0600 set before any byte is written) and ``NAME.pub``."""
    private_path, public_path = key_paths(base)
    if not overwrite:
        for p in (private_path, public_path):
            if p.exists() or p.is_symlink():
                raise FirmwareError(
                    "already exists; refusing to replace a key",
                    file=str(p),
                    hint="choose another --out, or pass --force to replace it (what it signed stays signed by it)",
                )
    write_atomic(private_path, private_key_pem(key, passphrase), mode=PRIVATE_KEY_MODE)
    try:
        write_atomic(public_path, key.public.pem(), mode=PUBLIC_KEY_MODE)
    except BaseException:
        # Half a key pair is worse than none: a private key whose public half was never written.
        private_path.unlink(missing_ok=True)
        raise
    return KeyFiles(private_path, public_path, key.key_id, key.algorithm)


def _read_key_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except OSError as exc:
        raise FormatError(f"cannot read key: {exc.strerror}", file=str(path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise FormatError("not a regular file", file=str(path))
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise FormatError(f"{st.st_size} bytes is too large for a key file", file=str(path))
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise FormatError(f"cannot read key: {exc.strerror}", file=str(path)) from exc


def check_private_key_mode(path: str | Path) -> None:
    """Refuse a private key file that anyone but its owner can read or write."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise FormatError(f"cannot read key: {exc.strerror}", file=str(p)) from exc
    if mode & 0o077:
        # A .pub given by mistake is public on purpose: say that, not "chmod 600" it.
        _refuse_public_key(_read_key_file(p), str(p))
        raise InsecureKeyFile(
            f"private key file has mode {stat.S_IMODE(mode):04o}: group or others can access it",
            file=str(p),
            hint=f"run 'chmod 600 {p}', or pass --allow-insecure-key",
        )


def is_encrypted_private_key(path: str | Path) -> bool:
    """True when the PEM at ``path`` is an encrypted private key (so a passphrase is needed)."""
    return is_encrypted_pem(_read_key_file(Path(path)))


def load_signing_key(path: str | Path, *, passphrase: bytes | None = None, allow_insecure: bool = False) -> SigningKey:
    """Read a PEM private key; a file readable by group or others is refused unless ``allow_insecure``."""
    p = Path(path)
    if not allow_insecure:
        check_private_key_mode(p)
    return parse_signing_key(_read_key_file(p), passphrase=passphrase, name=str(p))


def parse_signing_key(pem: bytes, *, passphrase: bytes | None = None, name: str | None = None) -> SigningKey:
    """A private key from PEM bytes (e.g. a CI secret that never touches the disk)."""
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise FormatError(f"{len(pem)} bytes is too large for a private key", file=name)
    _refuse_public_key(pem, name)
    try:
        private = serialization.load_pem_private_key(pem, password=passphrase or None)
    except TypeError:
        # cryptography says whether a password was missing or unexpected; its text holds no key bytes.
        needed = passphrase is None
        raise FormatError(
            "private key is encrypted and no passphrase was given"
            if needed
            else "private key is not encrypted but a passphrase was given",
            file=name,
            hint="pass --passphrase-env, or answer the prompt" if needed else "drop the passphrase option",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # Never chain the original: some messages quote the offending bytes.
        raise FormatError(
            "not a readable PEM private key, or the passphrase is wrong",
            file=name,
            hint="give the NAME.key file that 'fwtool keygen' wrote",
        ) from None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        algorithm = KeyAlgorithm.ED25519
    elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        algorithm = KeyAlgorithm.ECDSA_P256
    else:
        raise FormatError(
            f"unsupported private key type {type(private).__name__}",
            file=name,
            hint="use an Ed25519 or ECDSA P-256 key (fwtool keygen)",
        )
    return SigningKey(algorithm, PublicKey.from_key(private.public_key()), private)


def _refuse_public_key(pem: bytes, name: str | None) -> None:
    if b"-----BEGIN PUBLIC KEY-----" in pem:
        raise FormatError(
            "this is a public key; signing needs the private key",
            file=name,
            hint="give the NAME.key file that 'fwtool keygen' wrote beside it",
        )


def is_encrypted_pem(pem: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def parse_public_key(pem: bytes, *, name: str | None = None) -> PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo) bytes."""
    if b"PRIVATE KEY-----" in pem:
        raise FormatError(
            "this is a private key, not a public key",
            file=name,
            hint="give the NAME.pub file; keep NAME.key where releases are signed, never on a station",
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise FormatError(
            "not a PEM public key", file=name, hint="give the NAME.pub file that 'fwtool keygen' wrote"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise FormatError(f"unsupported public key type {type(key).__name__}", file=name)
    return PublicKey.from_key(key)


def load_public_key(path: str | Path) -> PublicKey:
    """Read a ``NAME.pub`` file."""
    p = Path(path)
    return parse_public_key(_read_key_file(p), name=str(p))


def read_env_secret(variable: str, *, what: str = "passphrase", environ: Mapping[str, str] | None = None) -> bytes:
    """The secret (``what``: a passphrase, a PEM key) held in environment variable ``variable``."""
    value = (os.environ if environ is None else environ).get(variable)
    if not value:
        raise FirmwareError(f"environment variable {variable} is not set or empty", hint=f"export the {what}")
    return value.encode()


def read_passphrase_env(variable: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The passphrase held in environment variable ``variable`` (it must be set and non-empty)."""
    return read_env_secret(variable, what="passphrase", environ=environ)
