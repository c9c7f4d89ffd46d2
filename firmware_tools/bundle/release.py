"""Making a release: stamp and check every image, order them for flashing, write and sign the manifest.

``build_release`` refuses the whole bundle when any image fails any check; nothing is written then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from firmware_tools.bundle.archive import pack_members
from firmware_tools.bundle.images import (
    FLASHABLE_KINDS,
    ImageFacts,
    describe_esp,
    describe_particle,
    esp_layout_checks,
    product_checks,
)
from firmware_tools.bundle.manifest import (
    MANIFEST_NAME,
    MAX_IMAGES,
    SIGNATURE_NAME,
    Family,
    ImageEntry,
    ImageKind,
    Manifest,
    Product,
    Target,
    check_image_name,
    encode_manifest,
)
from firmware_tools.bundle.partition_table import looks_like_partition_table
from firmware_tools.bundle.verify import verify_stream
from firmware_tools.checks import Check, Expectations
from firmware_tools.errors import CheckFailed, FirmwareError, FormatError, UnsupportedError
from firmware_tools.esp.flash_layout import DEFAULT_TABLE_OFFSET
from firmware_tools.fileio import write_atomic
from firmware_tools.keys import SigningKey


@dataclass(frozen=True)
class ReleaseInput:
    """One image for a release. ``address`` is where an ESP image is flashed; Particle modules say it."""

    name: str
    data: bytes = field(repr=False)
    address: int | None = None


@dataclass(frozen=True)
class ReleasedImage:
    entry: ImageEntry
    data: bytes = field(repr=False)
    stamped: bool
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Release:
    """A signed bundle in memory: the manifest, its exact bytes and signature, the images, the zip."""

    manifest: Manifest
    manifest_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    images: tuple[ReleasedImage, ...]
    bundle: bytes = field(repr=False)


class ReleaseRefused(CheckFailed):
    """At least one image failed a check; ``failures`` names each as ``(image, check)``."""

    def __init__(self, failures: Sequence[tuple[str, Check]]) -> None:
        self.failures = tuple(failures)
        shown = "; ".join(f"{name}: {c.name}: {c.reason}" for name, c in self.failures[:6])
        more = f" (and {len(self.failures) - 6} more)" if len(self.failures) > 6 else ""
        super().__init__(
            f"release refused, {len(self.failures)} check(s) failed: {shown}{more}",
            hint="fix the images, or run 'fwtool validate' on each for details",
        )


@dataclass
class _Candidate:
    name: str
    data: bytes
    address: int | None
    facts: ImageFacts | None = None
    stamped: bool = False
    extra: tuple[Check, ...] = ()


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _check_inputs(inputs: Sequence[ReleaseInput]) -> Family:
    if not inputs:
        raise UnsupportedError("a release needs at least one image")
    if len(inputs) > MAX_IMAGES:
        raise UnsupportedError(f"a release holds at most {MAX_IMAGES} images, not {len(inputs)}")
    seen: dict[str, str] = {}
    for item in inputs:
        try:
            check_image_name(item.name)
        except FormatError as exc:
            raise UnsupportedError(exc.message, file=item.name, hint="rename the file") from None
        if item.name.lower() in seen:
            raise UnsupportedError(f"two images are named {item.name!r}", hint="rename one of them")
        seen[item.name.lower()] = item.name
    families = {Family.ESP if i.address is not None else Family.PARTICLE for i in inputs}
    if len(families) > 1:
        raise UnsupportedError(
            "a release is for one device family: ESP images (ADDRESS=FILE) and Particle modules cannot be mixed"
        )
    return families.pop()


def _prepare_particle(items: list[_Candidate], product_id: int, product_version: int) -> Target:
    from firmware_tools.particle import stamp_product

    if (product_id, product_version) == (0xFFFF, 0xFFFF):
        # Device OS reads these two values as "not product firmware": a device would never join the product.
        raise UnsupportedError("product id 65535 with version 65535 means 'no product' in a Particle module")
    for c in items:
        c.facts = describe_particle(c.data, name=c.name, expect=Expectations())
    platforms = {c.facts.target for c in items if c.facts is not None and c.facts.target is not None}
    if len(platforms) > 1:
        listed = ", ".join(sorted(f"{t.platform_name} ({t.platform_id})" for t in platforms))
        raise UnsupportedError(f"the modules are for different platforms: {listed}")
    target = platforms.pop()
    for c in items:
        assert c.facts is not None
        if c.facts.kind is ImageKind.USER_PART and c.facts.product_field == "unset":
            c.data = stamp_product(c.data, product_id=product_id, product_version=product_version, name=c.name)
            c.stamped = True
        # Judge the final bytes, with the platform all modules share.
        c.facts = describe_particle(c.data, name=c.name, expect=Expectations(platform=target.platform_id))
        c.extra = product_checks(c.facts, product_id=product_id, product_version=product_version)
    return target


def _prepare_esp(items: list[_Candidate]) -> Target:
    first: Target | None = None
    # Images (which name their chip) first, so every later one is checked against the first chip.
    for c in sorted(items, key=lambda c: looks_like_partition_table(c.data)):
        assert c.address is not None
        chip = first.chip if first is not None else None
        c.facts = describe_esp(c.data, name=c.name, address=c.address, expect=Expectations(chip=chip))
        first = first or c.facts.target
    if first is None:
        raise UnsupportedError("an ESP release needs at least one app or bootloader image to name the chip")
    return first


def _layout_checks(
    items: list[_Candidate], family: Family, target: Target, table_offset: int
) -> list[tuple[str, Check]]:
    failures: list[tuple[str, Check]] = []
    if family is Family.PARTICLE:
        slots: dict[tuple[str, int], str] = {}
        for c in items:
            assert c.facts is not None and c.facts.particle is not None
            slot = (c.facts.kind.value, c.facts.particle.module_index)
            if slot in slots:
                failures.append((c.name, Check("unique", False, f"{slot[0]} {slot[1]} is also given as {slots[slot]}")))
            slots[slot] = c.name
    else:
        facts = [c.facts for c in items if c.facts is not None]
        failures.extend(
            (name, check)
            for name, check in esp_layout_checks(facts, chip=target.chip or "", table_offset=table_offset)
            if check.ok is False
        )
    for c in items:
        assert c.facts is not None
        if c.facts.kind not in FLASHABLE_KINDS:
            failures.append(
                (c.name, Check("kind", False, f"a {c.facts.kind.value} module is not flashed from a bundle"))
            )
    return failures


def _flash_order(items: list[_Candidate], family: Family) -> list[_Candidate]:
    if family is Family.ESP:
        return sorted(items, key=lambda c: c.address or 0)
    from firmware_tools.particle import flash_order, parse_module

    modules = [parse_module(c.data, name=c.name) for c in items]
    by_module = {id(m): c for m, c in zip(modules, items, strict=True)}
    return [by_module[id(m)] for m in flash_order(modules)]


def build_release(
    inputs: Sequence[ReleaseInput],
    *,
    product_id: int,
    product_version: int,
    key: SigningKey,
    product_name: str,
    notes: str = "",
    security_version: int | None = None,
    clock: Callable[[], datetime] = _now_utc,
    partition_table_offset: int = DEFAULT_TABLE_OFFSET,
) -> Release:
    """Stamp, check, order, describe and sign ``inputs`` into a bundle held in memory.

    ESP images must lie where the chip boots them (firmware_tools.esp.flash_layout);
    ``partition_table_offset`` is the bootloader's CONFIG_PARTITION_TABLE_OFFSET.
    Raises ReleaseRefused (exit 1) naming every failed check, UnsupportedError / FormatError (exit 2)
    for inputs that cannot make a release at all.
    """
    family = _check_inputs(inputs)
    items = [_Candidate(i.name, bytes(i.data), i.address) for i in inputs]
    target = _prepare_particle(items, product_id, product_version) if family is Family.PARTICLE else _prepare_esp(items)
    failures = _layout_checks(items, family, target, partition_table_offset)
    for c in items:
        assert c.facts is not None
        failures.extend((c.name, check) for check in (*c.facts.checks, *c.extra) if check.ok is False)
    if failures:
        raise ReleaseRefused(failures)

    released: list[ReleasedImage] = []
    for c in _flash_order(items, family):
        assert c.facts is not None
        entry = ImageEntry(
            name=c.name,
            kind=c.facts.kind,
            address=c.facts.address,
            size=len(c.data),
            sha256=hashlib.sha256(c.data).hexdigest(),
            particle=c.facts.particle,
            esp=c.facts.esp,
        )
        released.append(ReleasedImage(entry, c.data, c.stamped, (*c.facts.checks, *c.extra)))

    created_at = clock().astimezone(UTC).replace(microsecond=0)
    manifest = Manifest(
        product=Product(product_id, product_name),
        product_version=product_version,
        target=target,
        images=tuple(r.entry for r in released),
        created_at=created_at,
        signer_key_id=key.key_id,
        notes=notes,
        security_version=security_version,
    )
    try:
        manifest_bytes = encode_manifest(manifest)
    except FormatError as exc:
        raise UnsupportedError(f"cannot make this release: {exc.message}") from None
    signature = key.sign(manifest_bytes)
    bundle = pack_bundle(manifest_bytes, signature, [(r.entry.name, r.data) for r in released], created_at)
    # The writer and the verifier must never disagree: a bundle its own verifier rejects is not released.
    readback = verify_stream(bundle, [key.public])
    if not readback.ok:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in readback.failed)
        raise FirmwareError(f"internal error: the bundle just made does not verify ({failed}); nothing was written")
    return Release(manifest, manifest_bytes, signature, tuple(released), bundle)


def pack_bundle(
    manifest_bytes: bytes, signature: bytes, images: Sequence[tuple[str, bytes]], created_at: datetime
) -> bytes:
    """The .fwpkg zip: manifest.json, manifest.sig, then the images in flash order."""
    return pack_members(
        [(MANIFEST_NAME, manifest_bytes), (SIGNATURE_NAME, signature), *images],
        timestamp=created_at,
    )


def write_bundle(path: str | Path, release: Release) -> None:
    """Write the bundle atomically: the file is either the whole bundle or untouched."""
    write_atomic(path, release.bundle)
