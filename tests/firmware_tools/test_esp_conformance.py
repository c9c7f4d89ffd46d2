"""firmware_tools.esp against the real corpus: every fact esptool 5.6 recorded in *.expected.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from firmware_tools.errors import FormatError
from firmware_tools.esp import SignatureScheme, parse_esp_image
from firmware_tools.esp.fwformat import FORMAT
from tests.conftest import fixture_dir, fixture_files

ESP_FIXTURES = fixture_files("esp", "*.bin")


def _expected(path: Path) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(path.with_suffix(".expected.json").read_text())
    return facts


# The fixtures esptool itself refuses ("not a valid image") record the error instead of facts.
ESP_IMAGES = [p for p in ESP_FIXTURES if "esptool_image_info" not in _expected(p)]


def _esptool_rom(chip_id: int) -> Any:
    from esptool.targets import CHIP_DEFS

    return next(c for c in CHIP_DEFS.values() if getattr(c, "IMAGE_CHIP_ID", None) == chip_id)


def test_corpus_is_present() -> None:
    folder = fixture_dir("esp")
    assert sorted(folder.glob("*.bin")), f"no .bin files in {folder}"


@pytest.mark.parametrize("path", ESP_FIXTURES, ids=lambda p: p.name)
def test_parse_matches_esptool_facts(path: Path) -> None:
    from esptool.cmds import FLASH_MODES
    from esptool.util import get_key_from_value

    expected = _expected(path)
    data = path.read_bytes()
    assert len(data) == expected["size"]
    assert hashlib.sha256(data).hexdigest() == expected["sha256"]
    if "esptool_image_info" in expected:
        # esptool says "not a valid image": we refuse it too, and never claim it as ours.
        with pytest.raises(FormatError):
            parse_esp_image(data, name=path.name)
        assert FORMAT.sniff(data) == 0
        return

    image = parse_esp_image(data, name=path.name)
    assert FORMAT.sniff(data) > 0
    assert image.chip == expected["chip"]
    assert image.chip_id == expected["chip_id"]
    assert image.entry == int(expected["entry"], 16)
    assert image.min_rev == expected["min_rev_full"]
    assert image.min_rev_legacy == expected["min_rev"]
    assert image.max_rev == expected["max_rev_full"]
    assert len(image.segments) == expected["segment_count_header"]
    for seg, want in zip(image.segments, expected["segments"], strict=True):
        assert seg.load_address == int(want["load_addr"], 16)
        assert seg.length == want["length"]
        assert seg.file_offset == int(want["header_file_offset"], 16)
        assert list(seg.memory_types) == want["mem"]

    rom = _esptool_rom(image.chip_id)
    size_freq = int(expected["flash_size_freq"], 16)
    assert image.flash_mode == get_key_from_value(FLASH_MODES, expected["flash_mode"]).upper()
    assert image.flash_size == get_key_from_value(rom.FLASH_SIZES, size_freq & 0xF0)
    assert image.flash_freq == get_key_from_value(rom.FLASH_FREQUENCY, size_freq & 0x0F)

    assert image.checksum_stored == int(expected["checksum_stored"], 16)
    assert image.checksum_computed == int(expected["checksum_calc"], 16)
    assert image.checksum_ok is expected["checksum_valid"]
    assert image.hash_appended is expected["hash_appended"]
    if expected["hash_appended"]:
        assert image.sha256_stored is not None
        assert image.sha256_stored.hex() == expected["sha256_stored"]
        assert image.sha256_ok is expected["sha256_valid"]
        assert image.image_end == expected["data_length_before_sha"] + 32
        assert image.trailing_size == expected["trailing_bytes_after_sha"]
    else:
        assert image.sha256_ok is None
        assert image.image_end == image.size
    # The only fixture with bytes after its hash carries a Secure Boot V1 signature block.
    expected_scheme = (
        SignatureScheme.SECURE_BOOT_V1 if expected.get("trailing_bytes_after_sha") else SignatureScheme.NONE
    )
    assert image.signature is expected_scheme

    app = expected.get("app_desc")
    if app is None:
        assert image.app is None
    else:
        assert image.app is not None
        assert image.app.magic == int(app["magic_word"], 16)
        assert image.app.secure_version == app["secure_version"]
        assert image.app.version == app["version"]
        assert image.app.project_name == app["project_name"]
        assert image.app.time == app["time"]
        assert image.app.date == app["date"]
        assert image.app.idf_ver == app["idf_ver"]
        assert image.app.elf_sha256.hex() == app["app_elf_sha256"]
        assert image.app.mmu_page_size is None and app["mmu_page_size"] is None

    boot = expected.get("bootloader_desc")
    if boot is None:
        assert image.bootloader is None
    else:
        assert image.bootloader is not None
        assert image.bootloader.magic == boot["magic_byte"]
        assert image.bootloader.version == boot["version"]
        assert image.bootloader.idf_ver == boot["idf_ver"]
        assert image.bootloader.date_time == boot["date_time"]


@pytest.mark.parametrize("path", ESP_IMAGES, ids=lambda p: p.name)
def test_inspect_json_has_the_keys_the_issue_lists(path: Path) -> None:
    data = path.read_bytes()
    facts = FORMAT.inspect(data)
    json.dumps(facts)  # JSON-ready
    for key in (
        "format", "chip", "chip_id", "entry", "flash_mode", "flash_size", "flash_freq", "min_rev",
        "max_rev", "segments", "checksum_ok", "hash_appended", "sha256_ok",
    ):  # fmt: skip
        assert key in facts, key
    assert facts["format"] == "esp-image"
    app = facts["app"]
    assert (app is not None) == ("app_desc" in _expected(path))
    if isinstance(app, dict):
        for key in ("version", "project_name", "idf_ver", "secure_version", "date", "time", "elf_sha256"):
            assert key in app, key
    assert (facts["bootloader"] is not None) == ("bootloader_desc" in _expected(path))


@pytest.mark.parametrize("path", ESP_IMAGES, ids=lambda p: p.name)
def test_real_images_validate(path: Path) -> None:
    from firmware_tools.checks import Expectations

    report = FORMAT.validate(path.read_bytes(), Expectations())
    assert report.ok, report.failed


def test_no_particle_module_sniffs_as_esp() -> None:
    particle = fixture_files("particle", "*.bin")
    if not particle:
        pytest.skip("Particle corpus not found")
    claimed = [p.name for p in particle if FORMAT.sniff(p.read_bytes()) > 0]
    assert claimed == []


def test_the_partition_table_esptool_refuses_is_inspected_as_a_partition_table() -> None:
    from click.testing import CliRunner

    from firmware_tools.cli import main

    table = fixture_dir("esp") / "partitions_singleapp.bin"
    result = CliRunner().invoke(main, ["inspect", "--json", str(table)])
    [record] = json.loads(result.stdout)
    assert result.exit_code == 0, record
    assert record["format"] == "esp-partition-table"
    assert [(p["label"], p["type"], p["offset"]) for p in record["partitions"]] == [
        ("factory", "app", 0x10000),
        ("rfdata", "data", 0x110000),
        ("wifidata", "data", 0x150000),
    ]


def test_every_chips_bootloader_offset_is_esptools() -> None:
    # esptool's per-target BOOTLOADER_FLASH_OFFSET is the oracle for where the ROM looks (ESP32-H4: 0x2000).
    from esptool.targets import CHIP_DEFS

    from firmware_tools.bundle.images import esp_bootloader_offset
    from firmware_tools.esp.chips import CHIPS

    compared = [chip.key for chip in CHIPS if chip.key in CHIP_DEFS]
    assert "esp32h4" in compared and len(compared) >= 10
    wrong = {
        key: (hex(esp_bootloader_offset(key)), hex(CHIP_DEFS[key].BOOTLOADER_FLASH_OFFSET))
        for key in compared
        if esp_bootloader_offset(key) != CHIP_DEFS[key].BOOTLOADER_FLASH_OFFSET
    }
    assert not wrong, f"ours vs esptool's: {wrong}"
