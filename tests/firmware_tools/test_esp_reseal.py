"""Setting an app's version string: esptool accepts every re-sealed image and shows the new version."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.esp import InvalidVersionString, build_app_image, parse_esp_image, set_app_version
from firmware_tools.esp.chips import CHIPS
from tests.conftest import fixture_dir


def _esptool_view(chip: str, data: bytes) -> tuple[Any, str | None]:
    """esptool's own load of ``data`` and the app version its image-info would print."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.cmds import _parse_app_info

    loaded = LoadFirmwareImage(chip, data)
    for seg in loaded.segments:
        if "DROM" in seg.get_memory_type(loaded):
            info = _parse_app_info(seg.data)
            return loaded, (info["version"] if info else None)
    return loaded, None


def _assert_esptool_accepts(chip: str, data: bytes, version: str) -> None:
    loaded, shown = _esptool_view(chip, data)
    assert loaded.checksum == loaded.calculate_checksum()
    assert loaded.stored_digest == loaded.calc_digest
    assert shown == version


@pytest.mark.parametrize("chip", [c.key for c in CHIPS])
def test_built_images_resealed_are_accepted_by_esptool(chip: str) -> None:
    data = build_app_image(chip=chip, version="1.0.0", payload_size=3000)
    out = set_app_version(data, "9.9.9-factory")
    _assert_esptool_accepts(chip, out, "9.9.9-factory")
    assert len(out) == len(data)


def _real_apps() -> list[tuple[str, bytes]]:
    """The real app fixtures, unsigned: the signed one with its signature block cut off."""
    folder = fixture_dir("esp")
    blink = (folder / "esp_idf_blink_esp32s2.bin").read_bytes()
    signed = (folder / "hello-world-signed.bin").read_bytes()
    unsigned = signed[: parse_esp_image(signed).image_end]
    return [("esp32s2", blink), ("esp32", unsigned)]


def test_real_apps_resealed_are_accepted_by_esptool() -> None:
    for chip, data in _real_apps():
        for version in ("v9.9.9-factory", "x", "a" * 31):
            out = set_app_version(data, version)
            _assert_esptool_accepts(chip, out, version)
            before, after = parse_esp_image(data), parse_esp_image(out)
            assert after.app is not None and before.app is not None
            assert after.app.project_name == before.app.project_name
            assert after.app.idf_ver == before.app.idf_ver
            # Only the version field, the checksum byte and the SHA-256 may change.
            changed = [i for i, (a, b) in enumerate(zip(data, out, strict=True)) if a != b]
            allowed = set(range(0x30, 0x50)) | {after.checksum_offset}
            allowed |= set(range(after.checksum_offset + 1, after.checksum_offset + 33))
            assert set(changed) <= allowed


def test_a_32_character_version_without_nul_is_read_whole() -> None:
    # esp_app_desc_t allows 32 characters and no NUL; we write at most 31 but must read all 32.
    data = bytearray(build_app_image())
    data[0x30:0x50] = b"V" * 32
    app = parse_esp_image(bytes(data)).app
    assert app is not None and app.version == "V" * 32


def test_signed_image_is_refused_saying_why() -> None:
    signed = (fixture_dir("esp") / "hello-world-signed.bin").read_bytes()
    with pytest.raises(UnsupportedError, match="signature") as info:
        set_app_version(signed, "2.0.0", name="hello.bin")
    assert "before signing" in str(info.value)


def test_flash_encrypted_image_is_refused_saying_why() -> None:
    encrypted = (fixture_dir("esp") / "hello-world-signed-encrypted.bin").read_bytes()
    with pytest.raises(UnsupportedError, match="flash-encrypted"):
        set_app_version(encrypted, "2.0.0")


def test_bootloader_has_no_app_version() -> None:
    boot = (fixture_dir("esp") / "bootloader_esp32_v5_2.bin").read_bytes()
    with pytest.raises(UnsupportedError, match="bootloader"):
        set_app_version(boot, "2.0.0")


@pytest.mark.parametrize("version", ["", "a" * 32, "é" * 16, "1.0\n", "1\x000"])
def test_unstorable_versions_are_refused(version: str) -> None:
    with pytest.raises(InvalidVersionString):
        set_app_version(build_app_image(), version)


def test_31_bytes_of_utf8_fit() -> None:
    out = set_app_version(build_app_image(), "é" * 15 + "x")
    app = parse_esp_image(out).app
    assert app is not None and app.version == "é" * 15 + "x"


def test_damaged_image_is_not_resealed() -> None:
    data = bytearray(build_app_image())
    image = parse_esp_image(bytes(data))
    data[image.segments[-1].data_offset] ^= 0xFF
    with pytest.raises(FormatError, match="checksum"):
        set_app_version(bytes(data), "2.0.0")
    data = bytearray(build_app_image())
    data[3] ^= 0x01  # a header byte: checksum still fine, the SHA-256 no longer
    with pytest.raises(FormatError, match="SHA-256"):
        set_app_version(bytes(data), "2.0.0")


def test_non_image_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        set_app_version(b"\x00" * 100, "1.0")
