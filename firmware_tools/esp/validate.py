"""Named checks on an ESP32-family image: integrity, loadability, and what the caller expects."""

from __future__ import annotations

from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.esp import layout
from firmware_tools.esp.chips import chip_by_name, known_chip_names
from firmware_tools.esp.image import EspImage, parse_esp_image, rev_text


def validate_esp_image(data: bytes, expect: Expectations, *, name: str | None = None) -> ValidationReport:
    """Every check on ``data``; FormatError when it is not an ESP image at all."""
    return check_image(parse_esp_image(data, name=name), expect)


def check_image(image: EspImage, expect: Expectations) -> ValidationReport:
    checks = [
        _checksum(image),
        _sha256(image),
        _flash_mapping(image),
        _entry_point(image),
        _chip_revision(image),
        _descriptor(image),
        _signature(image),
    ]
    if expect.chip is not None:
        checks.append(_chip(image, expect.chip))
    if expect.version is not None:
        checks.append(_version(image, expect.version))
    # Asking for a Particle platform or product of an ESP image is asking for another file: a
    # factory must never take it for the binary it expected, so these fail rather than pass unchecked.
    for field, label, asked in (
        ("expected-platform", "platform", expect.platform),
        ("expected-product-id", "product id", expect.product_id),
        ("expected-product-version", "product version", expect.product_version),
    ):
        if asked is not None:
            reason = f"an ESP image for {image.chip} is not a Particle module: no {label} (expected {asked})"
            checks.append(Check(field, False, reason))
    return ValidationReport(tuple(checks))


def _checksum(image: EspImage) -> Check:
    if image.checksum_ok:
        return Check("checksum", True, f"stored {image.checksum_stored:#04x} matches the segment data")
    return Check(
        "checksum",
        False,
        f"stored {image.checksum_stored:#04x} but the segment data gives {image.checksum_computed:#04x}",
    )


def _sha256(image: EspImage) -> Check:
    if image.sha256_stored is None or image.sha256_computed is None:
        return Check("sha256", None, "no SHA-256 appended (hash_appended = 0)")
    if image.sha256_ok:
        return Check("sha256", True, "appended SHA-256 matches the image")
    return Check(
        "sha256",
        False,
        f"appended SHA-256 {image.sha256_stored.hex()[:16]}... but the image hashes to "
        f"{image.sha256_computed.hex()[:16]}...",
    )


def _flash_mapping(image: EspImage) -> Check:
    mapped = [s for s in image.segments if s.flash_mapped]
    if not mapped:
        return Check("flash_mapping", None, "no flash-mapped segments (RAM-loaded image)")
    for seg in mapped:
        if seg.data_offset % layout.MMU_PAGE != seg.load_address % layout.MMU_PAGE:
            return Check(
                "flash_mapping",
                False,
                f"segment at {seg.load_address:#010x} starts at file offset {seg.data_offset:#x}; "
                "the MMU needs both equal modulo 64 KiB",
            )
    return Check("flash_mapping", True, f"{len(mapped)} flash-mapped segments on their 64 KiB offsets")


def _entry_point(image: EspImage) -> Check:
    for seg in image.segments:
        # Padding segments load at address 0 and hold no code.
        if seg.load_address and seg.load_address <= image.entry < seg.load_address + seg.length:
            return Check(
                "entry_point",
                True,
                f"{image.entry:#010x} lies in the {seg.memory_type} segment at {seg.load_address:#010x}",
            )
    return Check("entry_point", False, f"entry point {image.entry:#010x} is outside every segment")


def _chip_revision(image: EspImage) -> Check:
    if not image.max_rev_bounded:
        return Check("chip_revision", True, f"from {rev_text(image.min_rev)}, no upper bound")
    if image.min_rev > image.max_rev:
        return Check(
            "chip_revision",
            False,
            f"minimum {rev_text(image.min_rev)} is above maximum {rev_text(image.max_rev)}: no chip can run it",
        )
    return Check("chip_revision", True, f"{rev_text(image.min_rev)} to {rev_text(image.max_rev)}")


def _descriptor(image: EspImage) -> Check:
    if image.app is not None:
        return Check("descriptor", True, f"esp_app_desc_t at {image.app.file_offset:#x}")
    if image.bootloader is not None:
        return Check("descriptor", True, f"esp_bootloader_desc_t at {image.bootloader.file_offset:#x}")
    return Check("descriptor", None, "no app or bootloader descriptor (RAM image or old ESP-IDF)")


def _signature(image: EspImage) -> Check:
    if image.signed:
        return Check(
            "signature",
            None,
            f"{image.signature.value} signature follows the hash; verifying it needs the device's key",
        )
    return Check("signature", None, f"not signed; {image.trailing_size} bytes follow the image")


def _chip(image: EspImage, wanted: str) -> Check:
    chip = chip_by_name(wanted)
    if chip is None:
        return Check("chip", False, f"{wanted!r} is not a chip name (known: {known_chip_names()})")
    if chip.chip_id != image.chip_id:
        return Check("chip", False, f"image is for {image.chip} (id {image.chip_id}), not {chip.name}")
    return Check("chip", True, f"image is for {image.chip}")


def _version(image: EspImage, wanted: str) -> Check:
    if image.app is None:
        return Check("version", False, "the image has no esp_app_desc_t, so no app version")
    if image.app.version != wanted:
        return Check("version", False, f"app version is {image.app.version!r}, not {wanted!r}")
    return Check("version", True, f"app version is {wanted!r}")
