"""The release bundle as one of the formats ``fwtool inspect`` and ``validate`` detect by content.

Without trusted keys the signature is reported as present but not checked; ``fwtool verify`` checks it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.errors import FirmwareError, FormatError

if TYPE_CHECKING:
    from firmware_tools.bundle.manifest import Family, Manifest
    from firmware_tools.bundle.verify import BundleVerification, VerifiedImage
    from firmware_tools.formats import FirmwareFormat

# The manifest, verification and crypto modules load only once the bytes are a zip: detecting a
# Particle module or an ESP image must not pay for them.

FORMAT_NAME = "release-bundle"
_ZIP_MAGIC = b"PK\x03\x04"
_IMAGE_FORMATS = {"particle": "firmware_tools.particle.fwformat", "esp": "firmware_tools.esp.fwformat"}


def _image_format(family: Family) -> FirmwareFormat:
    fmt: FirmwareFormat = importlib.import_module(_IMAGE_FORMATS[family.value]).FORMAT
    return fmt


def _unchecked(data: bytes) -> BundleVerification:
    from firmware_tools.bundle.verify import verify_stream

    result = verify_stream(data, (), name="bundle", require_signature=False)
    if result.manifest is None:
        reasons = "; ".join(c.reason for c in result.failed) or "no usable manifest"
        raise FormatError(f"release bundle without a usable manifest: {reasons}")
    return result


def _own_inspect(image: VerifiedImage, family: Family) -> dict[str, object]:
    from firmware_tools.bundle.manifest import ImageKind
    from firmware_tools.bundle.partition_table import parse_partition_table

    if image.kind is ImageKind.ESP_PARTITION_TABLE:
        return parse_partition_table(image.data, name=image.name).to_json()
    return _image_format(family).inspect(image.data)


def _own_summary(image: VerifiedImage, family: Family) -> list[str]:
    from firmware_tools.bundle.manifest import ImageKind
    from firmware_tools.bundle.partition_table import parse_partition_table

    if image.kind is ImageKind.ESP_PARTITION_TABLE:
        table = parse_partition_table(image.data, name=image.name)
        return [
            f"{p.label}: type {p.type} subtype {p.subtype} at {p.offset:#x}, {p.size} bytes" for p in table.partitions
        ]
    return _image_format(family).summary(image.data)


def _image_json(image: VerifiedImage, family: Family) -> dict[str, object]:
    try:
        own: object = _own_inspect(image, family)
    except FirmwareError as exc:
        own = {"error": exc.one_line()}
    return {"name": image.name, "kind": image.kind.value, "address": image.address, "inspect": own}


class ReleaseBundleFormat:
    """Implements firmware_tools.formats.FirmwareFormat for ``.fwpkg`` release bundles."""

    name = FORMAT_NAME

    def sniff(self, data: bytes) -> int:
        """95 for a zip whose directory holds manifest.json; 0 for anything else."""
        if not data.startswith(_ZIP_MAGIC):
            return 0
        from firmware_tools.bundle.archive import open_zip
        from firmware_tools.bundle.manifest import MANIFEST_NAME

        try:
            with open_zip(data, name="bundle") as zf:
                names = set(zf.namelist())
        except FormatError:
            return 0
        return 95 if MANIFEST_NAME in names else 0

    def inspect(self, data: bytes) -> dict[str, object]:
        from firmware_tools.bundle.manifest import manifest_json

        result = _unchecked(data)
        manifest = result.manifest
        assert manifest is not None
        return {
            "format": FORMAT_NAME,
            "manifest": manifest_json(manifest),
            "signature": {"present": _has_signature(data), "verified": None},
            "images": [_image_json(i, manifest.target.family) for i in result.images],
            "checks": [c.to_json() for c in result.checks],
            "ok": result.ok,
        }

    def summary(self, data: bytes) -> list[str]:
        result = _unchecked(data)
        m = result.manifest
        assert m is not None
        lines = [
            f"release bundle for product {m.product.id}{_name_note(m)}, product version {m.product_version}"
            + ("" if m.security_version is None else f", security version {m.security_version}"),
            f"target: {_target_text(m)}",
            f"created {m.created_at.strftime('%Y-%m-%d %H:%M:%SZ')}, signer key {m.signer_key_id} "
            f"(signature {'present' if _has_signature(data) else 'missing'}, not checked: use fwtool verify)",
        ]
        if m.notes:
            lines.append("notes: " + m.notes.replace("\n", "\n       "))
        lines.append(f"{len(m.images)} image(s), in flash order:")
        for n, e in enumerate(m.images, 1):
            lines.append(
                f"  {n}. {e.name}: {e.kind.value} at {e.address:#x}, {e.size} bytes, sha256 {e.sha256[:16]}..."
            )
            image = next((i for i in result.images if i.name == e.name), None)
            if image is None:
                continue
            try:
                own = _own_summary(image, m.target.family)
            except FirmwareError as exc:
                own = [f"cannot read: {exc.one_line()}"]
            lines.extend("       " + line for line in own)
        failed = result.failed
        lines.append("structure and hashes: ok" if not failed else f"{len(failed)} check(s) failed:")
        lines.extend(f"  {c.name}: {c.reason}" for c in failed)
        return lines

    def validate(self, data: bytes, expect: Expectations) -> ValidationReport:
        result = _unchecked(data)
        m = result.manifest
        assert m is not None
        checks = list(result.checks) + _expectation_checks(m, expect)
        return ValidationReport(tuple(checks))


def _name_note(m: Manifest) -> str:
    # `fwtool release` without --name records "product N": no need to say it twice.
    return f" ({m.product.name})" if m.product.has_own_name else ""


def _has_signature(data: bytes) -> bool:
    import io
    import zipfile

    from firmware_tools.bundle.manifest import SIGNATURE_NAME

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return SIGNATURE_NAME in zf.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False


def _target_text(m: Manifest) -> str:
    t = m.target
    if t.family.value == "particle":
        return f"Particle {t.platform_name} (platform {t.platform_id})"
    return f"ESP {t.chip}"


def _expectation_checks(m: Manifest, expect: Expectations) -> list[Check]:
    checks: list[Check] = []
    t = m.target
    if expect.product_id is not None:
        checks.append(
            Check(
                "expected-product-id",
                m.product.id == expect.product_id,
                f"product {m.product.id}, expected {expect.product_id}",
            )
        )
    if expect.product_version is not None:
        checks.append(
            Check(
                "expected-product-version",
                m.product_version == expect.product_version,
                f"product version {m.product_version}, expected {expect.product_version}",
            )
        )
    if expect.platform is not None:
        checks.append(
            Check(
                "expected-platform",
                t.platform_id == expect.platform,
                f"target {_target_text(m)}, expected platform {expect.platform}",
            )
        )
    if expect.chip is not None:
        from firmware_tools.esp.chips import normalise_chip_name

        same = t.chip is not None and normalise_chip_name(t.chip) == normalise_chip_name(expect.chip)
        checks.append(Check("expected-chip", same, f"target {_target_text(m)}, expected {expect.chip}"))
    if expect.version is not None:
        versions = [e.esp.app_version for e in m.images if e.esp is not None and e.esp.app_version is not None]
        checks.append(
            Check(
                "expected-version",
                bool(versions) and all(v == expect.version for v in versions),
                f"app version(s) {', '.join(versions) or 'none'}, expected {expect.version}",
            )
        )
    return checks


FORMAT = ReleaseBundleFormat()

__all__ = ["FORMAT", "ReleaseBundleFormat"]
