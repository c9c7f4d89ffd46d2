"""validate for ESP images: named checks with verdicts, and what the caller expects (chip, version)."""

from __future__ import annotations

import pytest

from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.errors import FormatError
from firmware_tools.esp import build_app_image, parse_esp_image, validate_esp_image
from firmware_tools.esp.layout import EXTENDED_HEADER, HEADER


def _check(report: ValidationReport, name: str) -> Check:
    return next(c for c in report.checks if c.name == name)


def test_a_good_image_passes_every_check() -> None:
    report = validate_esp_image(build_app_image(chip="esp32s3", version="3.1.0"), Expectations())
    assert report.ok
    for name in ("checksum", "sha256", "flash_mapping", "entry_point", "chip_revision", "descriptor"):
        assert _check(report, name).ok is True, name
    assert _check(report, "signature").ok is None


@pytest.mark.parametrize("chip", ["esp32s3", "ESP32-S3", "esp32-s3"])
def test_expected_chip_matches_in_any_spelling(chip: str) -> None:
    report = validate_esp_image(build_app_image(chip="esp32s3"), Expectations(chip=chip))
    assert _check(report, "chip").ok is True


def test_wrong_chip_fails_naming_both() -> None:
    report = validate_esp_image(build_app_image(chip="esp32s2"), Expectations(chip="esp32"))
    check = _check(report, "chip")
    assert check.ok is False and "ESP32-S2" in check.reason and "ESP32" in check.reason
    assert not report.ok


def test_unknown_chip_name_fails() -> None:
    report = validate_esp_image(build_app_image(), Expectations(chip="esp9000"))
    assert _check(report, "chip").ok is False


def test_expected_version() -> None:
    data = build_app_image(version="2.0.1")
    assert _check(validate_esp_image(data, Expectations(version="2.0.1")), "version").ok is True
    wrong = _check(validate_esp_image(data, Expectations(version="2.0.2")), "version")
    assert wrong.ok is False and "2.0.1" in wrong.reason


def test_version_asked_of_an_image_without_descriptor_fails() -> None:
    data = build_app_image()
    no_desc = bytearray(data)
    no_desc[0x20:0x24] = b"\0\0\0\0"  # break the descriptor's magic word
    report = validate_esp_image(bytes(no_desc), Expectations(version="1.0.0"))
    assert _check(report, "version").ok is False
    assert _check(report, "descriptor").ok is None


def test_particle_expectations_fail_on_an_esp_image() -> None:
    # `fwtool validate app.bin --platform photon` on an ESP image must not pass: it is not that binary.
    report = validate_esp_image(build_app_image(), Expectations(platform=6, product_id=5, product_version=2))
    for name in ("expected-platform", "expected-product-id", "expected-product-version"):
        check = _check(report, name)
        assert check.ok is False and "not a Particle module" in check.reason
    assert not report.ok
    assert validate_esp_image(build_app_image(), Expectations()).ok


def test_corruption_fails_checksum_and_hash() -> None:
    data = bytearray(build_app_image())
    data[parse_esp_image(bytes(data)).segments[-1].data_offset + 3] ^= 0x10
    report = validate_esp_image(bytes(data), Expectations())
    assert {c.name for c in report.failed} == {"checksum", "sha256"}


def _with_header(
    data: bytes, *, entry: int | None = None, min_rev: int | None = None, max_rev: int | None = None
) -> bytes:
    out = bytearray(data)
    magic, count, mode, size_freq, old_entry = HEADER.unpack_from(out, 0)
    HEADER.pack_into(out, 0, magic, count, mode, size_freq, old_entry if entry is None else entry)
    fields = list(EXTENDED_HEADER.unpack_from(out, HEADER.size))
    if min_rev is not None:
        fields[6] = min_rev
    if max_rev is not None:
        fields[7] = max_rev
    EXTENDED_HEADER.pack_into(out, HEADER.size, *fields)
    return bytes(out)


def test_entry_point_outside_every_segment_fails() -> None:
    report = validate_esp_image(_with_header(build_app_image(), entry=0x12345678), Expectations())
    assert _check(report, "entry_point").ok is False


def test_impossible_revision_range_fails() -> None:
    data = build_app_image()
    assert (
        _check(validate_esp_image(_with_header(data, min_rev=301, max_rev=199), Expectations()), "chip_revision").ok
        is False
    )
    ranged = _check(validate_esp_image(_with_header(data, min_rev=1, max_rev=399), Expectations()), "chip_revision")
    assert ranged.ok is True and "v3.99" in ranged.reason


def test_misplaced_flash_segment_fails() -> None:
    data = bytearray(build_app_image())
    image = parse_esp_image(bytes(data))
    code = next(s for s in image.segments if s.flash_mapped and s.file_offset > 0x1000)
    # Move the segment's load address by 4 bytes: the MMU could no longer map it.
    data[code.file_offset : code.file_offset + 4] = (code.load_address + 4).to_bytes(4, "little")
    assert _check(validate_esp_image(bytes(data), Expectations()), "flash_mapping").ok is False


def test_not_an_image_is_a_format_error_not_a_report() -> None:
    with pytest.raises(FormatError):
        validate_esp_image(b"hello", Expectations())


def test_report_is_json_ready() -> None:
    import json

    json.dumps(validate_esp_image(build_app_image(), Expectations(chip="esp32")).to_json())
