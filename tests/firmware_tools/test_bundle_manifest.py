"""The manifest's one exact JSON encoding: round trips, and refusal of anything it would not write."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.bundle.manifest import (
    PARTICLE_KIND_BY_FUNCTION,
    EspFacts,
    Family,
    ImageEntry,
    ImageKind,
    Manifest,
    ParticleFacts,
    Product,
    Target,
    check_image_name,
    decode_manifest,
    encode_manifest,
)
from firmware_tools.errors import FormatError

u16 = st.integers(0, 0xFFFF)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,40}", fullmatch=True).filter(
    lambda n: n.lower() not in ("manifest.json", "manifest.sig")
)
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30)
sha = st.binary(min_size=32, max_size=32).map(bytes.hex)
times = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)


@st.composite
def particle_entry(draw: st.DrawFn, platform_id: int) -> ImageEntry:
    kind = draw(st.sampled_from(sorted(PARTICLE_KIND_BY_FUNCTION.values(), key=lambda k: k.value)))
    return ImageEntry(
        name=draw(names),
        kind=kind,
        address=draw(st.integers(0, 0xFFFFFFFF)),
        size=draw(st.integers(1, 32 * 1024 * 1024)),
        sha256=draw(sha),
        particle=ParticleFacts(
            module_function=kind,
            module_index=draw(st.integers(0, 255)),
            module_version=draw(u16),
            platform_id=platform_id,
            product_id=draw(st.none() | u16),
            product_version=draw(st.none() | u16),
        ),
    )


@st.composite
def esp_entry(draw: st.DrawFn, chip: str) -> ImageEntry:
    kind = draw(st.sampled_from([ImageKind.ESP_APP, ImageKind.ESP_BOOTLOADER, ImageKind.ESP_PARTITION_TABLE]))
    facts = None
    if kind is not ImageKind.ESP_PARTITION_TABLE:
        facts = EspFacts(
            chip=chip,
            chip_id=draw(u16),
            app_version=draw(st.none() | printable),
            project_name=draw(st.none() | printable),
        )
    return ImageEntry(
        name=draw(names),
        kind=kind,
        address=draw(st.integers(0, 0xFFFFFFFF)),
        size=draw(st.integers(1, 1 << 20)),
        sha256=draw(sha),
        esp=facts,
    )


def _unique(entries: list[ImageEntry]) -> bool:
    lowered = [e.name.lower() for e in entries]
    return len(set(lowered)) == len(lowered)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    if draw(st.booleans()):
        platform_id = draw(u16)
        target = Target(Family.PARTICLE, platform_id=platform_id, platform_name=draw(printable))
        entry = particle_entry(platform_id)
    else:
        chip = draw(printable)
        target = Target(Family.ESP, chip=chip)
        entry = esp_entry(chip)
    images = draw(st.lists(entry, min_size=1, max_size=5).filter(_unique))
    return Manifest(
        product=Product(id=draw(st.integers(1, 0x7FFFFFFF)), name=draw(printable)),
        product_version=draw(u16),
        target=target,
        images=tuple(images),
        created_at=draw(times),
        signer_key_id=draw(st.binary(min_size=8, max_size=8).map(bytes.hex)),
        notes=draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")) | st.just("\n"))),
    )


def sample_manifest() -> Manifest:
    return Manifest(
        product=Product(1234, "Acme Sensor"),
        product_version=7,
        target=Target(Family.PARTICLE, platform_id=12, platform_name="argon"),
        images=(
            ImageEntry(
                "user.bin",
                ImageKind.USER_PART,
                0xB4000,
                1000,
                "ab" * 32,
                particle=ParticleFacts(ImageKind.USER_PART, 2, 6, 12, 1234, 7),
            ),
        ),
        created_at=datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC),
        signer_key_id="0123456789abcdef",
        notes="first run\nline two",
    )


@settings(max_examples=150, deadline=None)
@given(manifests())
def test_round_trip_over_generated_manifests(m: Manifest) -> None:
    data = encode_manifest(m)
    assert decode_manifest(data) == m
    assert encode_manifest(decode_manifest(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_manifest(data)


@settings(max_examples=200, deadline=None)
@given(manifests(), st.data())
def test_any_single_byte_change_is_refused_or_changes_the_value(m: Manifest, data: st.DataObject) -> None:
    raw = bytearray(encode_manifest(m))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    try:
        decoded = decode_manifest(bytes(raw))
    except FormatError:
        return
    # Canonical form: different bytes can only ever mean a different manifest.
    assert decoded != m


def test_encoding_is_fixed_readable_json() -> None:
    data = encode_manifest(sample_manifest())
    assert data.endswith(b"}\n")
    doc = json.loads(data)
    assert list(doc) == [
        "format_version",
        "product",
        "product_version",
        "target",
        "images",
        "created_at",
        "signer_key_id",
        "notes",
    ]
    assert doc["created_at"] == "2026-11-26T07:00:00Z"
    assert doc["images"][0] == {
        "name": "user.bin",
        "kind": "user-part",
        "address": 0xB4000,
        "size": 1000,
        "sha256": "ab" * 32,
        "particle": {
            "module_function": "user-part",
            "module_index": 2,
            "module_version": 6,
            "platform_id": 12,
            "product_id": 1234,
            "product_version": 7,
        },
    }


def _edit(mutate: object) -> bytes:
    doc = json.loads(encode_manifest(sample_manifest()))
    mutate(doc)  # type: ignore[operator]
    return (json.dumps(doc, indent=2) + "\n").encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), "exactly the keys"),
        (lambda d: d.pop("notes"), "exactly the keys"),
        (lambda d: d.update(format_version=2), "format version 2"),
        (lambda d: d.update(product_version=True), "integer"),
        (lambda d: d.update(product_version=70000), "integer from 0 to 65535"),
        (lambda d: d["product"].update(id=0), "product.id"),
        (lambda d: d["images"][0].update(name="../evil"), "not a plain file name"),
        (lambda d: d["images"][0].update(name="/abs"), "not a plain file name"),
        (lambda d: d["images"][0].update(name=".hidden"), "not a plain file name"),
        (lambda d: d["images"][0].update(name="Manifest.json"), "reserved"),
        (lambda d: d["images"].append(dict(d["images"][0])), "appears twice"),
        (lambda d: d["images"][0].update(sha256="AB" * 32), "sha256"),
        (lambda d: d["images"][0].update(kind="esp-app"), "cannot be in a particle bundle"),
        (lambda d: d["images"][0].update(kind="user-partx"), "unknown value"),
        (lambda d: d["images"][0].update(size=0), "size"),
        (lambda d: d.update(images=[]), "1 to 32 images"),
        (lambda d: d.update(created_at="2026-11-26 07:00:00"), "UTC time"),
        (lambda d: d.update(signer_key_id="XYZ"), "signer_key_id"),
        (lambda d: d.update(notes="\x1b[2Jgotcha"), "control characters"),
        (lambda d: d["target"].update(family="esp"), "exactly the keys"),
    ],
)
def test_refuses_what_it_would_not_write(mutate: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_manifest(_edit(mutate))


def test_refuses_non_canonical_bytes_of_a_valid_manifest() -> None:
    data = encode_manifest(sample_manifest())
    doc = json.loads(data)
    for variant in (
        json.dumps(doc).encode(),
        json.dumps(doc, indent=4).encode() + b"\n",
        data.rstrip(b"\n"),
        data + b"\n",
        b" " + data,
        data.replace(b'"product_version": 7', b'"product_version": 7.0'),
        data.replace(b'"product_version": 7', b'"product_version": 07'),
    ):
        with pytest.raises(FormatError):
            decode_manifest(variant)


def test_refuses_duplicate_keys_and_odd_numbers() -> None:
    data = encode_manifest(sample_manifest())
    dup = data.replace(b'"notes":', b'"notes": "x",\n  "notes":')
    with pytest.raises(FormatError, match="appears twice"):
        decode_manifest(dup)
    for bad in (b"NaN", b"1e3", b"9" * 5000):
        with pytest.raises(FormatError):
            decode_manifest(data.replace(b'"product_version": 7', b'"product_version": ' + bad))
    with pytest.raises(FormatError):
        decode_manifest(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(FormatError, match="ASCII"):
        decode_manifest(data.replace(b"Acme", "Äcme".encode()))


def test_encoder_refuses_invalid_values() -> None:
    m = sample_manifest()
    with pytest.raises(FormatError, match="UTC"):
        encode_manifest(dataclasses.replace(m, created_at=datetime(2026, 1, 1)))
    facts = m.images[0].particle
    assert facts is not None
    bad = dataclasses.replace(m.images[0], particle=dataclasses.replace(facts, module_function=ImageKind.BOOTLOADER))
    with pytest.raises(FormatError, match="module function"):
        encode_manifest(dataclasses.replace(m, images=(bad,)))
    with pytest.raises(FormatError, match="Particle facts only"):
        encode_manifest(dataclasses.replace(m, images=(dataclasses.replace(m.images[0], particle=None),)))


@pytest.mark.parametrize("name", ["app.bin", "p2-bootloader@5.6.0.bin", "A+b_c-d.bin", "x"])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_image_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "..", ".x", "a b", "a\x00", "é.bin", "x" * 129])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(FormatError):
        check_image_name(name)
