"""``fwtool inspect`` and ``validate`` on ESP images, through the generic commands and the format registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware_tools.cli import main
from firmware_tools.esp import build_app_image, parse_esp_image
from firmware_tools.ihex import bin_to_hex
from tests.conftest import fixture_dir


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "widget.bin"
    path.write_bytes(build_app_image(chip="esp32c3", version="1.4.0", project_name="widget"))
    return path


def test_inspect_json_of_an_app(app: Path) -> None:
    result = _run("inspect", "--json", str(app))
    assert result.exit_code == 0, result.output
    [facts] = json.loads(result.output)
    assert facts["file"] == str(app)
    assert facts["format"] == "esp-image"
    assert (facts["chip"], facts["chip_id"]) == ("ESP32-C3", 5)
    assert facts["checksum_ok"] is True and facts["hash_appended"] is True and facts["sha256_ok"] is True
    for key in ("entry", "flash_mode", "flash_size", "flash_freq", "min_rev", "max_rev", "segments"):
        assert key in facts
    assert facts["app"]["version"] == "1.4.0"
    assert facts["app"]["project_name"] == "widget"
    assert facts["bootloader"] is None


def test_inspect_json_of_a_bootloader() -> None:
    boot = fixture_dir("esp") / "bootloader_esp32_v5_2.bin"
    result = _run("inspect", "--json", str(boot))
    assert result.exit_code == 0, result.output
    [facts] = json.loads(result.output)
    assert facts["app"] is None
    assert facts["bootloader"]["idf_ver"] == "v5.2-dev-254-g1950b15"


def test_inspect_text_of_an_intel_hex_app(app: Path, tmp_path: Path) -> None:
    hex_file = tmp_path / "widget.hex"
    hex_file.write_bytes(bin_to_hex(app.read_bytes(), 0x10000))
    result = _run("inspect", str(hex_file))
    assert result.exit_code == 0, result.output
    assert "ESP32-C3" in result.output and "'1.4.0'" in result.output


def test_validate_chip_and_version(app: Path) -> None:
    assert _run("validate", "--chip", "esp32c3", "--version", "1.4.0", str(app)).exit_code == 0
    wrong_chip = _run("validate", "--chip", "esp32", str(app))
    assert wrong_chip.exit_code == 1 and "ESP32-C3" in wrong_chip.output
    wrong_version = _run("validate", "--version", "1.5.0", "--json", str(app))
    assert wrong_version.exit_code == 1
    assert "1.4.0" in wrong_version.output


def test_validate_a_corrupted_app_fails(app: Path) -> None:
    data = bytearray(app.read_bytes())
    data[parse_esp_image(bytes(data)).segments[-1].data_offset] ^= 0x01
    app.write_bytes(bytes(data))
    result = _run("validate", "--json", str(app))
    assert result.exit_code == 1
    [record] = json.loads(result.output)
    failed = {c["name"] for c in record["checks"] if c["ok"] is False}
    assert failed == {"checksum", "sha256"}
