"""The bundle as a format fwtool detects by content: sniff, inspect, summary, validate."""

from __future__ import annotations

import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools import keys
from firmware_tools.bundle.fwformat import FORMAT
from firmware_tools.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from firmware_tools.checks import Expectations
from firmware_tools.errors import FormatError
from firmware_tools.formats import detect
from tests.firmware_tools.test_bundle_support import argon_user_part, esp_release, particle_release, rezip

KEY = keys.generate_key()
PARTICLE = particle_release(KEY, notes="line one\nline two")
ESP = esp_release(KEY)


def test_detect_finds_bundles_by_content() -> None:
    assert detect(PARTICLE.bundle) is FORMAT
    assert detect(ESP.bundle) is FORMAT
    assert FORMAT.sniff(argon_user_part()) == 0
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "not a bundle")
    assert FORMAT.sniff(other.getvalue()) == 0
    assert FORMAT.sniff(b"PK\x03\x04garbage") == 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_sniff_never_raises(data: bytes) -> None:
    assert FORMAT.sniff(data) in (0, 95)
    assert FORMAT.sniff(b"PK\x03\x04" + data) in (0, 95)


def test_inspect_shows_the_manifest_and_each_image_s_own_facts() -> None:
    doc = FORMAT.inspect(PARTICLE.bundle)
    assert doc["format"] == "release-bundle"
    assert doc["signature"] == {"present": True, "verified": None}
    manifest = doc["manifest"]
    assert isinstance(manifest, dict) and manifest["product_version"] == 7
    images = doc["images"]
    assert isinstance(images, list)
    assert [i["name"] for i in images] == ["bootloader.bin", "system-part1.bin", "tinker.bin"]
    own = images[2]["inspect"]
    assert isinstance(own, dict)
    assert own["format"] == "particle-module"
    esp_images = FORMAT.inspect(ESP.bundle)["images"]
    assert isinstance(esp_images, list) and esp_images[1]["inspect"]["format"] == "esp-image"
    assert esp_images[1]["inspect"]["app"]["version"] == "2.0.0"


def test_summary_lines() -> None:
    text = "\n".join(FORMAT.summary(PARTICLE.bundle))
    assert "release bundle for product 1234 (Acme Sensor), product version 7" in text
    assert "Particle argon (platform 12)" in text
    assert "not checked: use fwtool verify" in text
    assert "notes: line one\n       line two" in text
    assert "3. tinker.bin: user-part at 0xb4000" in text
    assert "structure and hashes: ok" in text
    tampered = rezip(PARTICLE.bundle, replace={"tinker.bin": b"x"})
    assert "tinker.bin: manifest-hash" in "\n".join(FORMAT.summary(tampered))


def test_validate_checks_structure_and_expectations_but_not_the_signature() -> None:
    report = FORMAT.validate(PARTICLE.bundle, Expectations(product_id=1234, product_version=7, platform=12))
    assert report.ok
    assert next(c for c in report.checks if c.name == "signature").ok is None
    wrong = FORMAT.validate(PARTICLE.bundle, Expectations(product_id=1, product_version=8, platform=13))
    assert {c.name for c in wrong.failed} == {
        "expected-product-id",
        "expected-product-version",
        "expected-platform",
    }
    esp = FORMAT.validate(ESP.bundle, Expectations(chip="ESP32", version="2.0.0"))
    assert esp.ok
    assert {c.name for c in FORMAT.validate(ESP.bundle, Expectations(chip="esp32c3", version="1")).failed} == {
        "expected-chip",
        "expected-version",
    }


def test_unusable_bundles_raise_format_error() -> None:
    with pytest.raises(FormatError, match="without a usable manifest"):
        FORMAT.inspect(rezip(PARTICLE.bundle, replace={MANIFEST_NAME: b"{}"}))
    unsigned = rezip(PARTICLE.bundle, replace={SIGNATURE_NAME: None})
    assert FORMAT.inspect(unsigned)["signature"] == {"present": False, "verified": None}
