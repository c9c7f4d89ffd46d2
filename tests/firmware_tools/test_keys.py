"""Signing keys: generation, files and their modes, passphrases, signatures, and never leaking material."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from firmware_tools import keys
from firmware_tools.errors import FirmwareError, FormatError
from firmware_tools.keys import KeyAlgorithm

ALGORITHMS = list(KeyAlgorithm)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sign_and_verify_round_trip(algorithm: KeyAlgorithm) -> None:
    key = keys.generate_key(algorithm)
    sig = key.sign(b"manifest bytes")
    assert key.algorithm is algorithm
    assert key.public.verify(sig, b"manifest bytes")
    assert not key.public.verify(sig, b"manifest bytez")
    assert not keys.generate_key(algorithm).public.verify(sig, b"manifest bytes")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_single_byte_flip_of_a_signature_fails(algorithm: KeyAlgorithm) -> None:
    key = keys.generate_key(algorithm)
    sig = key.sign(b"m")
    for i in range(len(sig)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(sig)
            bad[i] ^= mask
            assert not key.public.verify(bytes(bad), b"m")
    assert not key.public.verify(sig[:-1], b"m")
    assert not key.public.verify(sig + b"\0", b"m")


def test_key_id_is_a_short_stable_hash_of_the_public_key(tmp_path: Path) -> None:
    key = keys.generate_key()
    files = keys.write_key_pair(key, tmp_path / "acme")
    assert len(key.key_id) == keys.KEY_ID_HEX_DIGITS
    int(key.key_id, 16)
    assert keys.load_public_key(files.public_path).key_id == key.key_id
    assert keys.load_signing_key(files.private_path).key_id == key.key_id
    assert keys.generate_key().key_id != key.key_id


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_key_files_have_the_right_modes_even_with_a_permissive_umask(tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    old = os.umask(0)
    try:
        files = keys.write_key_pair(keys.generate_key(algorithm), tmp_path / "acme")
    finally:
        os.umask(old)
    assert files.private_path == tmp_path / "acme.key"
    assert files.public_path == tmp_path / "acme.pub"
    assert _mode(files.private_path) == 0o600
    assert _mode(files.public_path) == 0o644
    assert files.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_private_key_mode_is_set_before_any_byte_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modes_at_write: list[int] = []
    real_fdopen = os.fdopen

    def spying_fdopen(fd: int, *args: object, **kwargs: object) -> object:
        modes_at_write.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "fdopen", spying_fdopen)
    keys.write_key_pair(keys.generate_key(), tmp_path / "k")
    assert modes_at_write[0] == 0o600


def test_out_name_with_a_key_suffix_is_not_doubled(tmp_path: Path) -> None:
    assert keys.key_paths(tmp_path / "acme.key") == (tmp_path / "acme.key", tmp_path / "acme.pub")
    assert keys.key_paths("dir/acme") == (Path("dir/acme.key"), Path("dir/acme.pub"))


def test_existing_key_is_never_replaced(tmp_path: Path) -> None:
    keys.write_key_pair(keys.generate_key(), tmp_path / "acme")
    before = (tmp_path / "acme.key").read_bytes()
    with pytest.raises(FirmwareError, match="already exists"):
        keys.write_key_pair(keys.generate_key(), tmp_path / "acme")
    assert (tmp_path / "acme.key").read_bytes() == before


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_passphrase_protected_key(tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    key = keys.generate_key(algorithm)
    files = keys.write_key_pair(key, tmp_path / "acme", passphrase=b"correct horse")
    assert b"ENCRYPTED" in files.private_path.read_bytes()
    assert keys.is_encrypted_private_key(files.private_path)
    assert keys.load_signing_key(files.private_path, passphrase=b"correct horse").key_id == key.key_id
    with pytest.raises(FormatError, match="no passphrase was given"):
        keys.load_signing_key(files.private_path)
    with pytest.raises(FormatError, match="passphrase is wrong"):
        keys.load_signing_key(files.private_path, passphrase=b"wrong")


def test_passphrase_given_for_a_plain_key_is_an_error(tmp_path: Path) -> None:
    files = keys.write_key_pair(keys.generate_key(), tmp_path / "acme")
    assert not keys.is_encrypted_private_key(files.private_path)
    with pytest.raises(FormatError, match="not encrypted"):
        keys.load_signing_key(files.private_path, passphrase=b"x")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
def test_private_key_readable_by_others_is_refused_unless_allowed(tmp_path: Path, mode: int) -> None:
    files = keys.write_key_pair(keys.generate_key(), tmp_path / "acme")
    files.private_path.chmod(mode)
    with pytest.raises(keys.InsecureKeyFile, match="--allow-insecure-key") as info:
        keys.load_signing_key(files.private_path)
    assert info.value.exit_code == 2
    assert keys.load_signing_key(files.private_path, allow_insecure=True).key_id == files.key_id


def test_errors_never_quote_key_material(tmp_path: Path) -> None:
    key = keys.generate_key()
    pem = keys.private_key_pem(key)
    body_lines = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    broken = tmp_path / "broken.key"
    # A PEM with one character changed: cryptography cannot load it, and the error must not echo it.
    broken.write_bytes(pem.replace(body_lines[0].encode(), body_lines[0][:-2].encode() + b"!!"))
    broken.chmod(0o600)
    with pytest.raises(FormatError) as info:
        keys.load_signing_key(broken)
    text = str(info.value) + repr(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    for line in body_lines:
        assert line not in text
        assert line[:16] not in text
    assert info.value.__cause__ is None


def test_signing_key_repr_hides_the_private_key() -> None:
    key = keys.generate_key(KeyAlgorithm.ECDSA_P256)
    raw = key.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    text = repr(key) + str(key)
    assert raw.hex() not in text
    assert "key=" not in text.replace("key_id", "").replace("PublicKey", "")


def test_unusable_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "g.pub"
    garbage.write_bytes(b"not a key")
    with pytest.raises(FormatError, match="not a PEM public key"):
        keys.load_public_key(garbage)
    with pytest.raises(FormatError, match="cannot read"):
        keys.load_public_key(tmp_path / "missing.pub")
    big = tmp_path / "big.pub"
    big.write_bytes(b"A" * (keys.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(FormatError, match="too large"):
        keys.load_public_key(big)
    with pytest.raises(FormatError, match="not a regular file"):
        keys.load_public_key(tmp_path)


def test_other_curves_are_refused(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    pub = tmp_path / "p384.pub"
    pub.write_bytes(
        p384.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(FormatError, match="P-256"):
        keys.load_public_key(pub)
    priv = tmp_path / "p384.key"
    priv.write_bytes(
        p384.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    priv.chmod(0o600)
    with pytest.raises(FormatError, match="unsupported private key"):
        keys.load_signing_key(priv)


def test_public_key_like_values() -> None:
    key = keys.generate_key()
    assert keys.as_public_key(key.public) is key.public
    assert keys.as_public_key(key.public.key).key_id == key.key_id
    with pytest.raises(TypeError):
        keys.as_public_key("a string is not a key")  # type: ignore[arg-type]


def test_passphrase_from_environment() -> None:
    assert keys.read_passphrase_env("PW", {"PW": "s3cret"}) == b"s3cret"
    with pytest.raises(FirmwareError, match="PW is not set"):
        keys.read_passphrase_env("PW", {})


def test_no_half_key_pair_is_left_when_the_public_half_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "acme.pub").mkdir()  # a folder where the .pub file must go: the rename fails
    with pytest.raises(FirmwareError, match="cannot write"):
        keys.write_key_pair(keys.generate_key(), tmp_path / "acme", overwrite=True)
    assert not (tmp_path / "acme.key").exists()
