"""``fwtool set-version`` as a user runs it: format told by content, output atomic, input untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    path = tmp_path / "app.bin"
    path.write_bytes(build_app_image(chip="esp32c3", version="1.0.0"))
    return path


def _version(path: Path) -> str | None:
    image = parse_esp_image(path.read_bytes())
    return image.app.version if image.app else None


def test_sets_the_version_into_a_new_file(app: Path, tmp_path: Path) -> None:
    original = app.read_bytes()
    out = tmp_path / "out.bin"
    result = _run("set-version", str(app), "2.5.0-rc1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "'1.0.0' -> '2.5.0-rc1'" in result.output
    assert _version(out) == "2.5.0-rc1"
    image = parse_esp_image(out.read_bytes())
    assert image.checksum_ok and image.sha256_ok
    assert app.read_bytes() == original


def test_json_output(app: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    result = _run("set-version", str(app), "3.0.0", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record == {
        "file": str(app),
        "format": "esp-image",
        "output": str(out),
        "previous_version": "1.0.0",
        "version": "3.0.0",
    }


def test_in_place(app: Path) -> None:
    result = _run("set-version", str(app), "4.0.0", "--in-place")
    assert result.exit_code == 0, result.output
    assert _version(app) == "4.0.0"
    assert [p.name for p in app.parent.iterdir()] == ["app.bin"]  # no temporary left behind


def test_needs_an_output_or_in_place(app: Path) -> None:
    original = app.read_bytes()
    assert _run("set-version", str(app), "2.0.0").exit_code == 2
    assert _run("set-version", str(app), "2.0.0", "-o", str(app)).exit_code == 2
    assert _run("set-version", str(app), "2.0.0", "-o", str(app.parent / "x.bin"), "--in-place").exit_code == 2
    assert app.read_bytes() == original
    assert not (app.parent / "x.bin").exists()


def test_too_long_version_is_refused_and_nothing_written(app: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    result = _run("set-version", str(app), "v" * 32, "-o", str(out))
    assert result.exit_code == 2
    assert "at most 31" in result.output
    assert not out.exists()


def test_intel_hex_in_intel_hex_out(app: Path, tmp_path: Path) -> None:
    hex_in = tmp_path / "app.hex"
    hex_in.write_bytes(bin_to_hex(app.read_bytes(), 0x10000))
    hex_out = tmp_path / "out.hex"
    result = _run("set-version", str(hex_in), "7.7.7", "-o", str(hex_out))
    assert result.exit_code == 0, result.output
    from firmware_tools.formats import read_firmware

    firmware = read_firmware(hex_out)
    assert firmware.container == "ihex" and firmware.base_address == 0x10000
    image = parse_esp_image(firmware.data)
    assert image.app is not None and image.app.version == "7.7.7" and image.sha256_ok


def test_signed_image_is_refused_with_the_reason(tmp_path: Path) -> None:
    signed = fixture_dir("esp") / "hello-world-signed.bin"
    out = tmp_path / "out.bin"
    result = _run("set-version", str(signed), "2.0.0", "-o", str(out))
    assert result.exit_code == 2
    assert "signature" in result.output and "hello-world-signed.bin" in result.output
    assert not out.exists()


def test_encrypted_image_is_refused_with_the_reason(tmp_path: Path) -> None:
    encrypted = fixture_dir("esp") / "hello-world-signed-encrypted.bin"
    out = tmp_path / "out.bin"
    result = _run("set-version", str(encrypted), "2.0.0", "-o", str(out))
    assert result.exit_code == 2
    assert "flash-encrypted" in result.output
    assert not out.exists()


def test_bootloader_is_refused(tmp_path: Path) -> None:
    boot = fixture_dir("esp") / "bootloader_esp32c3.bin"
    result = _run("set-version", str(boot), "2.0.0", "-o", str(tmp_path / "out.bin"))
    assert result.exit_code == 2
    assert "app version" in result.output


def test_unknown_content_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x12" * 300)
    result = _run("set-version", str(junk), "2.0.0", "-o", str(tmp_path / "out.bin"))
    assert result.exit_code == 2
    assert "junk.bin" in result.output


def test_particle_module_gets_its_product_version(tmp_path: Path) -> None:
    try:
        from firmware_tools.particle import pack_module, parse_module, stamp_product  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"firmware_tools.particle is not available yet: {exc}")
    module = tmp_path / "user.bin"
    module.write_bytes(pack_module(b"\x00" * 1024, platform_id=6, product_id=1234, product_version=3))
    out = tmp_path / "out.bin"
    result = _run("set-version", str(module), "17", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["previous_version"] == 3 and record["version"] == 17
    suffix = parse_module(out.read_bytes()).suffix
    assert (suffix.product_id, suffix.product_version) == (1234, 17)
    # A Particle product version is a number.
    assert _run("set-version", str(module), "v2", "-o", str(out)).exit_code == 2


def test_real_fwtool_then_esptool_image_info(app: Path, tmp_path: Path) -> None:
    """The console script end to end, and esptool's own CLI reading the result."""
    fwtool = Path(sys.executable).parent / "fwtool"
    if not fwtool.exists():
        pytest.skip(f"fwtool console script not installed beside {sys.executable}")
    out = tmp_path / "out.bin"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [str(fwtool), "set-version", str(app), "5.4.3", "-o", str(out)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = subprocess.run(
        [sys.executable, "-m", "esptool", "image-info", str(out)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert "App version: 5.4.3" in info.stdout
    assert "(valid)" in info.stdout and "invalid" not in info.stdout
    refused = subprocess.run(
        [str(fwtool), "set-version", str(app), "x" * 40, "-o", str(out)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("fwtool: error:") and "Traceback" not in refused.stderr
