"""Verifying a bundle: structure, signature by a trusted key, every member's hash, each image's own facts.

``verify_bundle`` reports every check by name; ``open_verified_bundle`` is the station's one call:
it returns the images in memory, in flash order, only when every check holds.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

from firmware_tools.bundle import archive
from firmware_tools.bundle.images import ImageFacts, describe_image, esp_layout_checks, product_checks
from firmware_tools.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    EspFacts,
    Family,
    ImageEntry,
    ImageKind,
    Manifest,
    ParticleFacts,
    decode_manifest,
    manifest_json,
)
from firmware_tools.checks import Check, Expectations
from firmware_tools.errors import CheckFailed, FirmwareError, FormatError
from firmware_tools.keys import PublicKey, PublicKeyLike, as_public_keys


@dataclass(frozen=True)
class VerifiedImage:
    """One image of a verified bundle, in memory, with what the manifest (and the image) say about it."""

    name: str
    kind: ImageKind
    address: int
    size: int
    sha256: str
    data: bytes = field(repr=False)
    particle: ParticleFacts | None = None
    esp: EspFacts | None = None

    @classmethod
    def from_entry(cls, entry: ImageEntry, data: bytes) -> VerifiedImage:
        return cls(entry.name, entry.kind, entry.address, entry.size, entry.sha256, data, entry.particle, entry.esp)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle every check passed on: the manifest, who signed it, and the images in flash order."""

    source: str
    manifest: Manifest
    manifest_bytes: bytes = field(repr=False)
    signer: PublicKey | None  # None only when opened with require_signature=False and no trusted key signed
    images: tuple[VerifiedImage, ...]


@dataclass(frozen=True)
class BundleVerification:
    """Every named check on a bundle; images hold only the members whose hash matched."""

    source: str
    checks: tuple[Check, ...]
    manifest: Manifest | None = None
    manifest_bytes: bytes = field(default=b"", repr=False)
    signer: PublicKey | None = None
    images: tuple[VerifiedImage, ...] = ()

    @property
    def ok(self) -> bool:
        return self.manifest is not None and all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.source,
            "ok": self.ok,
            "signer_key_id": self.signer.key_id if self.signer is not None else None,
            "checks": [c.to_json() for c in self.checks],
            "manifest": manifest_json(self.manifest) if self.manifest is not None else None,
        }

    def verified(self) -> VerifiedBundle:
        """The bundle, or CheckFailed naming what failed."""
        if not self.ok or self.manifest is None:
            failed = self.failed or (Check("manifest", False, "no usable manifest"),)
            shown = "; ".join(f"{c.name}: {c.reason}" for c in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise CheckFailed(
                f"bundle failed verification: {shown}{more}",
                file=self.source,
                hint="do not flash it; ask for a bundle signed by a trusted key",
            )
        return VerifiedBundle(self.source, self.manifest, self.manifest_bytes, self.signer, self.images)


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, ok: bool | None, reason: str) -> bool:
        self.items.append(Check(name, ok, reason))
        return ok is not False


def _read(zf: zipfile.ZipFile, listing: archive.Listing, name: str) -> bytes | str:
    member = listing.get(name)
    if member is None:
        return "missing"
    try:
        return archive.read_member(zf, member)
    except archive.MemberUnreadable as exc:
        return str(exc)


def _signature_check(
    out: _Checks, manifest_bytes: bytes, signature: bytes | str, trusted: Sequence[PublicKey], required: bool
) -> PublicKey | None:
    if isinstance(signature, str):
        out.add("signature", False if required else None, f"{SIGNATURE_NAME}: {signature}")
        return None
    for key in trusted:
        if key.verify(signature, manifest_bytes):
            out.add("signature", True, f"manifest signed by trusted key {key.key_id} ({key.algorithm.value})")
            return key
    if not trusted:
        out.add(
            "signature",
            False if required else None,
            "no trusted key given to check the signature with (fwtool verify BUNDLE --trusted KEY.pub)",
        )
    else:
        ids = ", ".join(k.key_id for k in trusted)
        out.add(
            "signature",
            False if required else None,
            f"the signature does not verify with any trusted key ({ids}): altered, or signed by another key",
        )
    return None


def _diff(entry: ImageEntry, got_kind: ImageKind, got_address: int, particle: object, esp: object) -> list[str]:
    problems: list[str] = []
    if got_kind is not entry.kind:
        problems.append(f"kind: manifest {entry.kind.value}, image {got_kind.value}")
    if got_address != entry.address:
        problems.append(f"address: manifest {entry.address:#x}, image {got_address:#x}")
    for label, want, have in (("particle", entry.particle, particle), ("esp", entry.esp, esp)):
        if want == have:
            continue
        if want is None or have is None:
            problems.append(f"{label} facts: manifest {want!r}, image {have!r}")
            continue
        for f in fields(want):
            a, b = getattr(want, f.name), getattr(have, f.name)
            if a != b:
                problems.append(f"{f.name}: manifest {a!r}, image {b!r}")
    return problems


def _image_checks(out: _Checks, manifest: Manifest, entry: ImageEntry, data: bytes) -> ImageFacts | None:
    t = manifest.target
    expect = Expectations(platform=t.platform_id) if t.family is Family.PARTICLE else Expectations(chip=t.chip)
    try:
        facts = describe_image(data, family=t.family, name=entry.name, address=entry.address, expect=expect)
    except FirmwareError as exc:
        out.add(f"{entry.name}: metadata", False, f"the image cannot be read as a {t.family.value} image: {exc}")
        return None
    problems = _diff(entry, facts.kind, facts.address, facts.particle, facts.esp)
    if facts.target is not None and facts.target != t:
        problems.append("target: the image is for another device than the manifest's target")
    out.add(
        f"{entry.name}: metadata",
        not problems,
        "; ".join(problems) if problems else "what the image says matches the manifest",
    )
    product = product_checks(facts, product_id=manifest.product.id, product_version=manifest.product_version)
    for check in (*facts.checks, *product):
        out.add(f"{entry.name}: {check.name}", check.ok, check.reason)
    return facts


def _verify_zip(
    zf: zipfile.ZipFile, source: str, trusted: Sequence[PublicKey], require_signature: bool
) -> BundleVerification:
    out = _Checks()
    listing = archive.list_members(zf)
    out.add(
        "archive",
        not listing.problems,
        "; ".join(listing.problems) if listing.problems else f"{len(listing.members)} well-formed members",
    )
    manifest_bytes = _read(zf, listing, MANIFEST_NAME)
    if isinstance(manifest_bytes, str):
        out.add("manifest", False, f"{MANIFEST_NAME}: {manifest_bytes}")
        return BundleVerification(source, tuple(out.items))
    signer = _signature_check(out, manifest_bytes, _read(zf, listing, SIGNATURE_NAME), trusted, require_signature)
    try:
        manifest = decode_manifest(manifest_bytes)
    except FirmwareError as exc:
        out.add("manifest", False, exc.message)
        return BundleVerification(source, tuple(out.items), signer=signer)
    out.add("manifest", True, f"format {manifest.format_version}, {len(manifest.images)} image(s)")
    if signer is not None:
        out.add(
            "signer",
            manifest.signer_key_id == signer.key_id,
            f"manifest names signer {manifest.signer_key_id}, signed by {signer.key_id}",
        )

    listed = {e.name for e in manifest.images}
    unlisted = sorted(m.name for m in listing.members if m.name not in listed | {MANIFEST_NAME, SIGNATURE_NAME})
    missing = sorted(name for name in listed if listing.get(name) is None)
    problems = [f"{n} is not listed in the manifest" for n in unlisted]
    problems += [f"{n} is listed but not in the bundle" for n in missing]
    out.add("members", not problems, "; ".join(problems) if problems else "exactly the listed images")

    images: list[VerifiedImage] = []
    described: list[ImageFacts] = []
    for entry in manifest.images:
        member = listing.get(entry.name)
        if member is None:
            continue
        if member.size != entry.size:
            out.add(
                f"{entry.name}: manifest-hash", False, f"member holds {member.size} bytes, manifest says {entry.size}"
            )
            continue
        try:
            data = archive.read_member(zf, member)
        except archive.MemberUnreadable as exc:
            out.add(f"{entry.name}: manifest-hash", False, str(exc))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if not out.add(
            f"{entry.name}: manifest-hash",
            digest == entry.sha256,
            "matches the manifest"
            if digest == entry.sha256
            else f"is {digest[:16]}..., manifest says {entry.sha256[:16]}...",
        ):
            continue
        images.append(VerifiedImage.from_entry(entry, data))
        facts = _image_checks(out, manifest, entry, data)
        if facts is not None:
            described.append(facts)
    if manifest.target.family is Family.ESP and len(described) == len(manifest.images):
        # Where the images go, judged as the chip boots (the same rules the release applied).
        for piece, check in esp_layout_checks(described, chip=manifest.target.chip or ""):
            out.add(f"{piece}: {check.name}", check.ok, check.reason)
    return BundleVerification(source, tuple(out.items), manifest, manifest_bytes, signer, tuple(images))


def verify_stream(
    source: bytes | BinaryIO,
    trusted_keys: Sequence[PublicKeyLike],
    *,
    name: str = "<bundle>",
    require_signature: bool = True,
) -> BundleVerification:
    """Every check on a bundle held in memory or an open file. FormatError when it is not a zip at all."""
    trusted = as_public_keys(trusted_keys)
    with archive.open_zip(source, name=name) as zf:
        return _verify_zip(zf, name, trusted, require_signature)


def verify_bundle(
    path: str | Path, trusted_keys: Sequence[PublicKeyLike], *, require_signature: bool = True
) -> BundleVerification:
    """Every check on the bundle file at ``path``; its size is bounded before anything is read."""
    p = Path(path)
    archive.check_bundle_file(p)
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    with fh:
        return verify_stream(fh, trusted_keys, name=str(p), require_signature=require_signature)


def open_verified_bundle(
    path: str | Path, trusted_keys: Sequence[PublicKeyLike], *, require_signature: bool = True
) -> VerifiedBundle:
    """Open, verify against ``trusted_keys``, and return the images in memory in flash order.

    CheckFailed (exit 1) names every check that failed; FormatError (exit 2) for a file that is not
    a bundle at all.
    """
    return verify_bundle(path, trusted_keys, require_signature=require_signature).verified()
