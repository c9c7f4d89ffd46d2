"""The release manifest: typed values, and the one exact JSON encoding that is signed.

``encode_manifest`` is the only writer of manifest bytes. ``decode_manifest`` accepts exactly what it
would write (strict types, no unknown or duplicate keys, canonical bytes), so a signature over the
bytes is a signature over the typed value.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firmware_tools.errors import FormatError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})

MAX_IMAGES = 32
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_NAME_CHARS = 128
MAX_PRODUCT_NAME_CHARS = 200
MAX_NOTES_CHARS = 4000
MAX_TEXT_CHARS = 64  # versions, project names, chip and platform names
MAX_PRODUCT_ID = 0x7FFFFFFF
MAX_U16 = 0xFFFF
MAX_ADDRESS = 0xFFFFFFFF
CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# An image name is also its zip member name: one path component, no leading dot, nothing a shell
# or a file system would treat specially.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
# Printable text, plus newline and tab in notes: a bundle's text may be shown on a terminal and
# must not carry escape sequences.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class Family(enum.Enum):
    PARTICLE = "particle"
    ESP = "esp"


class ImageKind(enum.Enum):
    """What an image is; Particle kinds follow the module function (reference §7)."""

    RESOURCE = "resource"
    BOOTLOADER = "bootloader"
    MONO_FIRMWARE = "mono-firmware"
    SYSTEM_PART = "system-part"
    USER_PART = "user-part"
    SETTINGS = "settings"
    NCP_FIRMWARE = "ncp-firmware"
    RADIO_STACK = "radio-stack"
    ASSET = "asset"
    ESP_BOOTLOADER = "esp-bootloader"
    ESP_APP = "esp-app"
    ESP_PARTITION_TABLE = "esp-partition-table"

    @property
    def family(self) -> Family:
        return Family.ESP if self.value.startswith("esp-") else Family.PARTICLE


# Particle module function code (prefix byte 14) -> kind.
PARTICLE_KIND_BY_FUNCTION: dict[int, ImageKind] = {
    1: ImageKind.RESOURCE,
    2: ImageKind.BOOTLOADER,
    3: ImageKind.MONO_FIRMWARE,
    4: ImageKind.SYSTEM_PART,
    5: ImageKind.USER_PART,
    6: ImageKind.SETTINGS,
    7: ImageKind.NCP_FIRMWARE,
    8: ImageKind.RADIO_STACK,
    9: ImageKind.ASSET,
}


@dataclass(frozen=True)
class Product:
    id: int
    name: str

    @property
    def has_own_name(self) -> bool:
        """False when the name is the default `fwtool release` gives ("product 1234")."""
        return self.name != f"product {self.id}"

    def describe(self) -> str:
        """The product as a person reads it: "acme (1234)", or "1234" when it has no name of its own."""
        return f"{self.name} ({self.id})" if self.has_own_name else str(self.id)


@dataclass(frozen=True)
class Target:
    """The device the bundle is for: a Particle platform, or an ESP chip."""

    family: Family
    platform_id: int | None = None
    platform_name: str | None = None
    chip: str | None = None


@dataclass(frozen=True)
class ParticleFacts:
    """What a Particle module's own prefix and suffix say."""

    module_function: ImageKind
    module_index: int
    module_version: int
    platform_id: int
    product_id: int | None
    product_version: int | None


@dataclass(frozen=True)
class EspFacts:
    """What an ESP image's own header and descriptor say."""

    chip: str
    chip_id: int
    app_version: str | None
    project_name: str | None


@dataclass(frozen=True)
class ImageEntry:
    """One image, as the bundle lists it; ``name`` is also its zip member name."""

    name: str
    kind: ImageKind
    address: int
    size: int
    sha256: str
    particle: ParticleFacts | None = None
    esp: EspFacts | None = None


@dataclass(frozen=True)
class Manifest:
    product: Product
    product_version: int
    target: Target
    images: tuple[ImageEntry, ...]
    created_at: datetime
    signer_key_id: str
    notes: str = ""
    format_version: int = FORMAT_VERSION
    # Like imgtool's security counter: a station that has accepted this number for the product never
    # accepts a lower one, override or not. None: the release does not take part (written as absent).
    security_version: int | None = None


# ---------------------------------------------------------------------------------------------
# Checks shared by the encoder (refuse to write nonsense) and the decoder (refuse to read it).


def _bad(message: str) -> FormatError:
    return FormatError(message, file=MANIFEST_NAME)


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(f"{what} must be an integer from {low} to {high}, not {value!r}")
    return value


def _check_text(value: object, what: str, max_chars: int, *, multiline: bool = False) -> str:
    if type(value) is not str:
        raise _bad(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > max_chars:
        raise _bad(f"{what} is longer than {max_chars} characters")
    text = value.replace("\n", "").replace("\t", "") if multiline else value
    if _CONTROL_RE.search(text):
        raise _bad(f"{what} holds control characters")
    return value


def check_image_name(name: object) -> str:
    """An image name usable as a zip member name on every file system, or FormatError."""
    if type(name) is not str:
        raise _bad(f"image name must be a string, not {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS or not _NAME_RE.fullmatch(name):
        raise _bad(
            f"image name {name!r} is not a plain file name (letters, digits and ._+@-, "
            f"at most {MAX_NAME_CHARS} characters, not starting with a dot)"
        )
    if name.lower() in RESERVED_NAMES:
        raise _bad(f"image name {name!r} is reserved for the bundle itself")
    return name


def _check_created_at(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None) or value.microsecond:
        raise _bad("created_at must be a UTC time in whole seconds")
    return value


def _check_entry(entry: ImageEntry, target: Target) -> None:
    check_image_name(entry.name)
    _check_int(entry.address, f"{entry.name}: address", 0, MAX_ADDRESS)
    _check_int(entry.size, f"{entry.name}: size", 1, MAX_IMAGE_BYTES)
    if not isinstance(entry.sha256, str) or not _SHA256_RE.fullmatch(entry.sha256):
        raise _bad(f"{entry.name}: sha256 must be 64 lower-case hex digits")
    if entry.kind.family is not target.family:
        raise _bad(f"{entry.name}: a {entry.kind.value} image cannot be in a {target.family.value} bundle")
    if entry.kind.family is Family.PARTICLE:
        facts = entry.particle
        if facts is None or entry.esp is not None:
            raise _bad(f"{entry.name}: a Particle image must carry Particle facts only")
        if facts.module_function is not entry.kind:
            raise _bad(f"{entry.name}: kind {entry.kind.value} but module function {facts.module_function.value}")
        _check_int(facts.module_index, f"{entry.name}: module_index", 0, 0xFF)
        _check_int(facts.module_version, f"{entry.name}: module_version", 0, MAX_U16)
        _check_int(facts.platform_id, f"{entry.name}: platform_id", 0, MAX_U16)
        for what, value in (("product_id", facts.product_id), ("product_version", facts.product_version)):
            if value is not None:
                _check_int(value, f"{entry.name}: {what}", 0, MAX_U16)
    elif entry.kind is ImageKind.ESP_PARTITION_TABLE:
        if entry.esp is not None or entry.particle is not None:
            raise _bad(f"{entry.name}: a partition table carries no image facts")
    else:
        esp = entry.esp
        if esp is None or entry.particle is not None:
            raise _bad(f"{entry.name}: an ESP image must carry ESP facts only")
        _check_text(esp.chip, f"{entry.name}: chip", MAX_TEXT_CHARS)
        _check_int(esp.chip_id, f"{entry.name}: chip_id", 0, MAX_U16)
        for what, text in (("app_version", esp.app_version), ("project_name", esp.project_name)):
            if text is not None:
                _check_text(text, f"{entry.name}: {what}", MAX_TEXT_CHARS)


def check_manifest(m: Manifest) -> Manifest:
    """Every rule a manifest must follow; returns it unchanged, or raises FormatError naming the rule."""
    if m.format_version != FORMAT_VERSION:
        raise _bad(
            f"format version {m.format_version!r} is not supported (this fwtool reads {FORMAT_VERSION})",
        )
    _check_int(m.product.id, "product.id", 1, MAX_PRODUCT_ID)
    _check_text(m.product.name, "product.name", MAX_PRODUCT_NAME_CHARS)
    _check_int(m.product_version, "product_version", 0, MAX_U16)
    if m.security_version is not None:
        _check_int(m.security_version, "security_version", 0, MAX_U16)
    t = m.target
    if t.family is Family.PARTICLE:
        if t.chip is not None:
            raise _bad("a Particle target has no chip")
        _check_int(t.platform_id, "target.platform_id", 0, MAX_U16)
        _check_text(t.platform_name, "target.platform_name", MAX_TEXT_CHARS)
    else:
        if t.platform_id is not None or t.platform_name is not None:
            raise _bad("an ESP target has no Particle platform")
        _check_text(t.chip, "target.chip", MAX_TEXT_CHARS)
    if not 1 <= len(m.images) <= MAX_IMAGES:
        raise _bad(f"a bundle holds 1 to {MAX_IMAGES} images, not {len(m.images)}")
    seen: set[str] = set()
    for entry in m.images:
        _check_entry(entry, t)
        # Case-folded: a bundle unpacked on a case-insensitive file system must not lose an image.
        if entry.name.lower() in seen:
            raise _bad(f"image name {entry.name!r} appears twice")
        seen.add(entry.name.lower())
    _check_created_at(m.created_at)
    if not isinstance(m.signer_key_id, str) or not _KEY_ID_RE.fullmatch(m.signer_key_id):
        raise _bad("signer_key_id must be 16 lower-case hex digits")
    _check_text(m.notes, "notes", MAX_NOTES_CHARS, multiline=True)
    return m


# ---------------------------------------------------------------------------------------------
# Encoding.


def _target_json(t: Target) -> dict[str, object]:
    if t.family is Family.PARTICLE:
        return {"family": t.family.value, "platform_id": t.platform_id, "platform_name": t.platform_name}
    return {"family": t.family.value, "chip": t.chip}


def image_json(e: ImageEntry) -> dict[str, object]:
    out: dict[str, object] = {
        "name": e.name,
        "kind": e.kind.value,
        "address": e.address,
        "size": e.size,
        "sha256": e.sha256,
    }
    if e.particle is not None:
        p = e.particle
        out["particle"] = {
            "module_function": p.module_function.value,
            "module_index": p.module_index,
            "module_version": p.module_version,
            "platform_id": p.platform_id,
            "product_id": p.product_id,
            "product_version": p.product_version,
        }
    if e.esp is not None:
        out["esp"] = {
            "chip": e.esp.chip,
            "chip_id": e.esp.chip_id,
            "app_version": e.esp.app_version,
            "project_name": e.esp.project_name,
        }
    return out


def manifest_json(m: Manifest) -> dict[str, object]:
    """The manifest as JSON-ready values, keys in their one fixed order."""
    out: dict[str, object] = {
        "format_version": m.format_version,
        "product": {"id": m.product.id, "name": m.product.name},
        "product_version": m.product_version,
    }
    # Absent rather than null when unset, so bundles made before the field existed stay canonical.
    if m.security_version is not None:
        out["security_version"] = m.security_version
    out.update(
        {
            "target": _target_json(m.target),
            "images": [image_json(e) for e in m.images],
            "created_at": m.created_at.strftime(CREATED_AT_FORMAT),
            "signer_key_id": m.signer_key_id,
            "notes": m.notes,
        }
    )
    return out


def encode_manifest(m: Manifest) -> bytes:
    """The exact bytes that are stored as manifest.json and signed."""
    check_manifest(m)
    text = json.dumps(manifest_json(m), indent=2, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------
# Decoding.


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise _bad(f"non-integer number {text[:20]!r}")


def _object(value: object, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what} must be an object")
    if tuple(value) != keys:
        raise _bad(f"{what} must have exactly the keys {', '.join(keys)} in that order")
    return value


def _enum(cls: type[enum.Enum], value: object, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise _bad(f"{what}: unknown value {value!r}") from None


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _check_int(value, what, 0, MAX_U16)


def _opt_text(value: object, what: str) -> str | None:
    return None if value is None else _check_text(value, what, MAX_TEXT_CHARS)


def _decode_image(raw: object, index: int) -> ImageEntry:
    what = f"images[{index}]"
    if not isinstance(raw, dict):
        raise _bad(f"{what} must be an object")
    base = ("name", "kind", "address", "size", "sha256")
    facts_key = "particle" if "particle" in raw else "esp" if "esp" in raw else None
    d = _object(raw, what, (*base, facts_key) if facts_key else base)
    kind = _enum(ImageKind, d["kind"], f"{what}.kind")
    particle: ParticleFacts | None = None
    esp: EspFacts | None = None
    if facts_key == "particle":
        p = _object(
            d["particle"],
            f"{what}.particle",
            ("module_function", "module_index", "module_version", "platform_id", "product_id", "product_version"),
        )
        particle = ParticleFacts(
            module_function=_enum(ImageKind, p["module_function"], f"{what}.particle.module_function"),
            module_index=_check_int(p["module_index"], f"{what}.particle.module_index", 0, 0xFF),
            module_version=_check_int(p["module_version"], f"{what}.particle.module_version", 0, MAX_U16),
            platform_id=_check_int(p["platform_id"], f"{what}.particle.platform_id", 0, MAX_U16),
            product_id=_opt_int(p["product_id"], f"{what}.particle.product_id"),
            product_version=_opt_int(p["product_version"], f"{what}.particle.product_version"),
        )
    elif facts_key == "esp":
        e = _object(d["esp"], f"{what}.esp", ("chip", "chip_id", "app_version", "project_name"))
        esp = EspFacts(
            chip=_check_text(e["chip"], f"{what}.esp.chip", MAX_TEXT_CHARS),
            chip_id=_check_int(e["chip_id"], f"{what}.esp.chip_id", 0, MAX_U16),
            app_version=_opt_text(e["app_version"], f"{what}.esp.app_version"),
            project_name=_opt_text(e["project_name"], f"{what}.esp.project_name"),
        )
    return ImageEntry(
        name=check_image_name(d["name"]),
        kind=kind,
        address=_check_int(d["address"], f"{what}.address", 0, MAX_ADDRESS),
        size=_check_int(d["size"], f"{what}.size", 1, MAX_IMAGE_BYTES),
        sha256=_check_text(d["sha256"], f"{what}.sha256", 64),
        particle=particle,
        esp=esp,
    )


def _decode_target(raw: object) -> Target:
    if isinstance(raw, dict) and raw.get("family") == Family.ESP.value:
        d = _object(raw, "target", ("family", "chip"))
        return Target(Family.ESP, chip=_check_text(d["chip"], "target.chip", MAX_TEXT_CHARS))
    d = _object(raw, "target", ("family", "platform_id", "platform_name"))
    return Target(
        _enum(Family, d["family"], "target.family"),
        platform_id=_check_int(d["platform_id"], "target.platform_id", 0, MAX_U16),
        platform_name=_check_text(d["platform_name"], "target.platform_name", MAX_TEXT_CHARS),
    )


def _decode_created_at(raw: object) -> datetime:
    text = _check_text(raw, "created_at", 32)
    try:
        return datetime.strptime(text, CREATED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"created_at {text!r} is not a UTC time like 2026-01-31T12:00:00Z") from None


def decode_manifest(data: bytes) -> Manifest:
    """The manifest in ``data``; FormatError unless ``data`` is exactly what ``encode_manifest`` writes."""
    try:
        text = data.decode("ascii")
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except UnicodeDecodeError:
        raise _bad("manifest is not ASCII JSON") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise _bad(f"manifest is not valid JSON: {str(exc)[:120]}") from None
    optional = ("security_version",) if isinstance(doc, dict) and "security_version" in doc else ()
    d = _object(
        doc,
        "manifest",
        (
            "format_version",
            "product",
            "product_version",
            *optional,
            "target",
            "images",
            "created_at",
            "signer_key_id",
            "notes",
        ),
    )
    version = d["format_version"]
    if version != FORMAT_VERSION or type(version) is not int:
        raise _bad(f"format version {version!r} is not supported (this fwtool reads {FORMAT_VERSION})")
    product = _object(d["product"], "product", ("id", "name"))
    images = d["images"]
    if not isinstance(images, list):
        raise _bad("images must be a list")
    if len(images) > MAX_IMAGES:
        raise _bad(f"a bundle holds at most {MAX_IMAGES} images")
    manifest = Manifest(
        product=Product(
            id=_check_int(product["id"], "product.id", 1, MAX_PRODUCT_ID),
            name=_check_text(product["name"], "product.name", MAX_PRODUCT_NAME_CHARS),
        ),
        product_version=_check_int(d["product_version"], "product_version", 0, MAX_U16),
        target=_decode_target(d["target"]),
        images=tuple(_decode_image(raw, i) for i, raw in enumerate(images)),
        created_at=_decode_created_at(d["created_at"]),
        signer_key_id=_check_text(d["signer_key_id"], "signer_key_id", 16),
        notes=_check_text(d["notes"], "notes", MAX_NOTES_CHARS, multiline=True),
        security_version=_check_int(d["security_version"], "security_version", 0, MAX_U16) if optional else None,
    )
    check_manifest(manifest)
    if encode_manifest(manifest) != data:
        raise _bad("manifest is not in canonical form (it was not written by fwtool release)")
    return manifest
