"""Verification against tampering: any flipped byte, untrusted keys, added or removed members, lying manifests."""

from __future__ import annotations

import dataclasses
import io
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools import keys
from firmware_tools.bundle import (
    BundleVerification,
    Release,
    decode_manifest,
    encode_manifest,
    open_verified_bundle,
    verify_bundle,
    verify_stream,
)
from firmware_tools.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from firmware_tools.errors import CheckFailed, FormatError
from tests.firmware_tools.test_bundle_support import esp_release, members, particle_release, rezip

KEY = keys.generate_key()
ECDSA_KEY = keys.generate_key(keys.KeyAlgorithm.ECDSA_P256)
PARTICLE = particle_release(KEY)
ESP = esp_release(KEY)
ECDSA = particle_release(ECDSA_KEY)
RELEASES = {"particle": (PARTICLE, KEY), "esp": (ESP, KEY), "ecdsa": (ECDSA, ECDSA_KEY)}


def _verify(bundle: bytes, key: keys.SigningKey = KEY) -> BundleVerification:
    return verify_stream(bundle, [key.public], name="t.fwpkg")


def _failed(result: BundleVerification) -> set[str]:
    return {c.name for c in result.failed}


@pytest.mark.parametrize("which", sorted(RELEASES))
def test_untouched_bundles_verify(which: str) -> None:
    release, key = RELEASES[which]
    result = _verify(release.bundle, key)
    assert result.ok, result.failed
    assert result.signer == key.public
    assert [i.data for i in result.images] == [r.data for r in release.images]


@pytest.mark.parametrize("which", sorted(RELEASES))
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_flipping_any_single_byte_of_any_member_fails(which: str, data: st.DataObject) -> None:
    release, key = RELEASES[which]
    contents = members(release.bundle)
    name, content = data.draw(st.sampled_from(contents), label="member")
    pos = data.draw(st.integers(0, len(content) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(content)
    tampered[pos] ^= mask
    result = _verify(rezip(release.bundle, replace={name: bytes(tampered)}), key)
    assert not result.ok
    expected = {
        MANIFEST_NAME: "signature",
        SIGNATURE_NAME: "signature",
    }.get(name, f"{name}: manifest-hash")
    assert expected in _failed(result)


@pytest.mark.parametrize("which", ["particle", "esp"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipping_a_byte_anywhere_in_the_file_never_yields_other_verified_content(
    which: str, data: st.DataObject
) -> None:
    release, key = RELEASES[which]
    raw = bytearray(release.bundle)
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[pos] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        result = _verify(bytes(raw), key)
    except FormatError:
        return
    if result.ok:
        # Only zip bookkeeping (a timestamp, a comment) may change without failing, never what is flashed.
        assert result.manifest_bytes == release.manifest_bytes
        assert [i.data for i in result.images] == [r.data for r in release.images]


def test_exhaustive_byte_flips_of_every_member_of_a_small_bundle() -> None:
    for name, content in members(ESP.bundle)[:2]:  # manifest and signature, every position
        for pos in range(len(content)):
            tampered = bytearray(content)
            tampered[pos] ^= 0x01
            assert not _verify(rezip(ESP.bundle, replace={name: bytes(tampered)})).ok, (name, pos)


def test_untrusted_key_fails_and_a_trusted_one_among_others_passes() -> None:
    other = keys.generate_key()
    result = _verify(PARTICLE.bundle, other)
    assert _failed(result) == {"signature"}
    assert other.key_id in next(c.reason for c in result.failed)
    both = verify_stream(PARTICLE.bundle, [other.public, ECDSA_KEY.public, KEY.public])
    assert both.ok and both.signer == KEY.public
    assert not verify_stream(PARTICLE.bundle, []).ok


def test_signature_not_required_reports_it_unchecked() -> None:
    unsigned = rezip(PARTICLE.bundle, replace={SIGNATURE_NAME: None})
    assert not _verify(unsigned).ok
    result = verify_stream(unsigned, [], require_signature=False)
    assert result.ok
    assert next(c for c in result.checks if c.name == "signature").ok is None


def test_a_member_added_fails() -> None:
    result = _verify(rezip(PARTICLE.bundle, add={"extra.bin": b"payload"}))
    assert _failed(result) == {"members"}
    assert "extra.bin is not listed" in next(c.reason for c in result.failed)


@pytest.mark.parametrize("name", ["bootloader.bin", "system-part1.bin", "tinker.bin"])
def test_an_image_removed_fails(name: str) -> None:
    result = _verify(rezip(PARTICLE.bundle, replace={name: None}))
    assert _failed(result) == {"members"}
    assert f"{name} is listed but not in the bundle" in next(c.reason for c in result.failed)
    assert name not in [i.name for i in result.images]


def test_manifest_or_signature_removed_fails() -> None:
    no_manifest = _verify(rezip(PARTICLE.bundle, replace={MANIFEST_NAME: None}))
    assert "manifest" in _failed(no_manifest) and no_manifest.manifest is None
    assert _failed(_verify(rezip(PARTICLE.bundle, replace={SIGNATURE_NAME: None}))) == {"signature"}


def test_image_swapped_for_another_valid_image_fails() -> None:
    swapped = rezip(ESP.bundle, replace={"app.bin": ESP.images[2].data})
    assert "app.bin: manifest-hash" in _failed(_verify(swapped))


def _resigned(release: Release, key: keys.SigningKey, **changes: object) -> bytes:
    manifest = dataclasses.replace(decode_manifest(release.manifest_bytes), **changes)  # type: ignore[arg-type]
    data = encode_manifest(manifest)
    return rezip(release.bundle, replace={MANIFEST_NAME: data, SIGNATURE_NAME: key.sign(data)})


def test_manifest_rewritten_and_signed_by_an_attacker_fails() -> None:
    attacker = keys.generate_key()
    bundle = _resigned(PARTICLE, attacker, signer_key_id=attacker.key_id, product_version=99)
    result = _verify(bundle)
    assert "signature" in _failed(result) and result.signer is None
    with pytest.raises(CheckFailed, match="signature"):
        result.verified()


def test_trusted_signature_with_another_signer_id_fails() -> None:
    bundle = _resigned(PARTICLE, KEY, signer_key_id="0" * 16)
    assert _failed(_verify(bundle)) == {"signer"}


def test_signed_manifest_that_lies_about_an_image_fails_the_metadata_check() -> None:
    m = decode_manifest(PARTICLE.manifest_bytes)
    user = m.images[2]
    assert user.particle is not None
    lie = dataclasses.replace(user, particle=dataclasses.replace(user.particle, module_version=99))
    bundle = _resigned(PARTICLE, KEY, images=(*m.images[:2], lie))
    result = _verify(bundle)
    assert _failed(result) == {"tinker.bin: metadata"}
    assert "module_version: manifest 99, image 6" in next(c.reason for c in result.failed)


def test_signed_manifest_with_a_product_version_the_app_does_not_carry_fails() -> None:
    result = _verify(_resigned(PARTICLE, KEY, product_version=8))
    assert _failed(result) == {"tinker.bin: product-version"}


def test_signed_manifest_moving_an_esp_image_fails() -> None:
    m = decode_manifest(ESP.manifest_bytes)
    moved = dataclasses.replace(m.images[1], address=0x10010)
    result = _verify(_resigned(ESP, KEY, images=(m.images[0], moved, m.images[2])))
    assert {"app.bin: address", "app.bin: app-partition"} <= _failed(result)


def _hostile(entry: zipfile.ZipInfo | str, data: bytes = b"x") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members(PARTICLE.bundle):
            zf.writestr(name, content)
        zf.writestr(entry, data)
    return out.getvalue()


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("/etc/cron.d/evil", "absolute path"),
        ("../../evil.bin", "'..'"),
        (_link("link.bin"), "symbolic link"),
        ("dir/inner.bin", "inside a folder"),
    ],
)
def test_hostile_members_fail_the_archive_check(entry: zipfile.ZipInfo | str, reason: str) -> None:
    result = _verify(_hostile(entry))
    assert "archive" in _failed(result)
    assert reason in next(c.reason for c in result.checks if c.name == "archive")


def test_duplicate_member_fails() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        bundle = _hostile("tinker.bin", b"second copy")
    result = _verify(bundle)
    assert {"archive", "members"} <= _failed(result)


def test_zip_bomb_member_fails_without_being_inflated() -> None:
    result = _verify(_hostile("bomb.bin", b"\0" * (8 * 1024 * 1024)))
    assert "zip bomb" in next(c.reason for c in result.checks if c.name == "archive")


def test_unusable_files_are_format_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not a release bundle") as info:
        verify_stream(b"hello", [KEY.public])
    assert info.value.exit_code == 2
    with pytest.raises(FormatError, match="cannot read"):
        verify_bundle(tmp_path / "missing.fwpkg", [KEY.public])
    garbage = tmp_path / "garbage.fwpkg"
    garbage.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(FormatError):
        open_verified_bundle(garbage, [KEY.public])


def test_open_verified_bundle_refuses_tampered_files(tmp_path: Path) -> None:
    path = tmp_path / "t.fwpkg"
    path.write_bytes(rezip(PARTICLE.bundle, add={"extra.bin": b"x"}))
    with pytest.raises(CheckFailed, match=r"members: extra\.bin is not listed"):
        open_verified_bundle(path, [KEY.public])


def test_json_report_names_every_check() -> None:
    doc = _verify(rezip(PARTICLE.bundle, replace={"tinker.bin": b"evil"})).to_json()
    assert doc["ok"] is False and doc["file"] == "t.fwpkg"
    checks = {c["name"]: c["ok"] for c in doc["checks"]}  # type: ignore[attr-defined]
    assert checks["signature"] is True and checks["tinker.bin: manifest-hash"] is False
    assert checks["bootloader.bin: manifest-hash"] is True
