"""fwtool inspect / validate / set-product / pack / convert as a user runs them, on modules the project packs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools.cli import main
from firmware_tools.ihex import bin_to_hex, looks_like_ihex
from firmware_tools.particle import Dependency, ModuleFunction, pack_module, parse_module

ISSUE_KEYS = {
    "file",
    "format",
    "platform_id",
    "platform",
    "module_function",
    "module_index",
    "module_version",
    "flags",
    "dependencies",
    "start_address",
    "end_address",
    "prefix_offset",
    "product_id",
    "product_version",
    "suffix_size",
    "sha256_stored",
    "sha256_ok",
    "crc32_stored",
    "crc32_ok",
    "size_ok",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.bin"
    path.write_bytes(
        pack_module(
            b"\x01\x02" * 500,
            platform_id=12,
            product_id=1234,
            product_version=7,
            dependencies=[Dependency(4, 1, 3300)],
        )
    )
    return path


def test_inspect_json_has_every_key(app: Path) -> None:
    code, out, _ = run("inspect", "--json", str(app))
    assert code == 0
    [record] = json.loads(out)
    assert set(record) >= ISSUE_KEYS
    assert record["file"] == str(app)
    assert record["format"] == "particle-module"
    assert (record["platform_id"], record["platform"]) == (12, "argon")
    assert record["module_function"] == "USER_PART"
    assert (record["product_id"], record["product_version"]) == (1234, 7)
    assert record["dependencies"] == [{"function": 4, "function_name": "SYSTEM_PART", "index": 1, "version": 3300}]
    assert record["start_address"] == 0xD4000 and isinstance(record["end_address"], int)
    assert len(record["crc32_stored"]) == 8 and record["crc32_ok"] and record["sha256_ok"] and record["size_ok"]


def test_inspect_json_reports_unusable_files_and_exits_2(app: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    missing = tmp_path / "missing.bin"
    code, out, _ = run("inspect", "--json", str(app), str(junk), str(missing))
    assert code == 2
    records = json.loads(out)
    assert [set(r) == {"file", "error"} for r in records] == [False, True, True]
    assert records[2]["file"] == str(missing) and "cannot read" in records[2]["error"]


def test_inspect_human_summary(app: Path) -> None:
    code, out, _ = run("inspect", str(app))
    assert code == 0
    assert "It is firmware for product id 1234 at version 7" in out
    assert "Compiled for argon" in out


def test_inspect_takes_intel_hex(app: Path, tmp_path: Path) -> None:
    hex_path = tmp_path / "app.hex"
    hex_path.write_bytes(bin_to_hex(app.read_bytes(), 0xD4000))
    code, out, _ = run("inspect", "--json", str(hex_path))
    assert code == 0
    [record] = json.loads(out)
    assert record["container"] == "ihex" and record["hex_base_address"] == 0xD4000
    assert record["product_id"] == 1234


def test_validate_exit_codes(app: Path, tmp_path: Path) -> None:
    assert run("validate", str(app), "--platform", "argon", "--product-id", "1234", "--product-version", "7")[0] == 0
    code, out, _ = run("validate", str(app), "--platform", "boron", "--product-version", "8")
    assert code == 1
    assert "expected-platform" in out and "expected-product-version" in out
    damaged = tmp_path / "damaged.bin"
    data = bytearray(app.read_bytes())
    data[100] ^= 1
    damaged.write_bytes(data)
    code, out, _ = run("validate", "--json", str(damaged))
    assert code == 1
    [record] = json.loads(out)
    assert not record["ok"]
    assert {c["name"] for c in record["checks"] if c["ok"] is False} == {"crc32", "sha256"}
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"")
    assert run("validate", str(junk))[0] == 2
    assert run("validate", str(app), "--platform", "toaster")[0] == 2


def test_validate_platform_by_number(app: Path) -> None:
    code, out, _ = run("validate", "--json", str(app), "--platform", "12")
    assert code == 0
    [record] = json.loads(out)
    assert {"name": "expected-platform", "ok": True, "reason": "built for argon, expected argon"} in record["checks"]


def test_set_product_writes_new_file_and_keeps_input(app: Path, tmp_path: Path) -> None:
    original = app.read_bytes()
    out = tmp_path / "stamped.bin"
    code, stdout, _ = run("set-product", str(app), "--product-id", "94", "--product-version", "3", "-o", str(out))
    assert code == 0, stdout
    assert app.read_bytes() == original
    module = parse_module(out.read_bytes())
    assert (module.suffix.product_id, module.suffix.product_version) == (94, 3)
    assert module.crc_ok and module.sha_ok


def test_set_product_never_overwrites_input_without_in_place(app: Path) -> None:
    original = app.read_bytes()
    code, _, err = run("set-product", str(app), "--product-id", "1", "--product-version", "2", "-o", str(app))
    assert code == 2 and "refusing to overwrite" in err
    assert app.read_bytes() == original
    code, _, _ = run("set-product", str(app), "--product-id", "1", "--product-version", "2")
    assert code == 2
    code, _, _ = run("set-product", str(app), "--product-id", "1", "--product-version", "2", "--in-place")
    assert code == 0
    assert parse_module(app.read_bytes()).suffix.product_version == 2


def test_set_product_refuses_module_without_product_fields(tmp_path: Path) -> None:
    old = tmp_path / "old.bin"
    old.write_bytes(pack_module(b"x", platform_id=6, product_id=None, product_version=None))
    out = tmp_path / "out.bin"
    code, _, err = run("set-product", str(old), "--product-id", "1", "--product-version", "2", "-o", str(out))
    assert code == 2
    assert "36-byte suffix" in err and "Traceback" not in err
    assert not out.exists()


def test_set_product_keeps_intel_hex_container(app: Path, tmp_path: Path) -> None:
    hex_in = tmp_path / "in.hex"
    hex_in.write_bytes(bin_to_hex(app.read_bytes(), 0xD4000))
    hex_out = tmp_path / "out.hex"
    code, _, _ = run("set-product", str(hex_in), "--product-id", "5", "--product-version", "6", "-o", str(hex_out))
    assert code == 0
    assert looks_like_ihex(hex_out.read_bytes())
    code, out, _ = run("inspect", "--json", str(hex_out))
    [record] = json.loads(out)
    assert (record["product_id"], record["product_version"], record["hex_base_address"]) == (5, 6, 0xD4000)


def test_pack_then_inspect(tmp_path: Path) -> None:
    payload = tmp_path / "payload.raw"
    payload.write_bytes(b"\xaa" * 3000)
    out = tmp_path / "p2.bin"
    code, stdout, _ = run(
        "pack",
        str(payload),
        "-o",
        str(out),
        "--platform",
        "p2",
        "--product-id",
        "321",
        "--product-version",
        "4",
        "--dependency",
        "system-part:1:5301",
    )
    assert code == 0, stdout
    module = parse_module(out.read_bytes())
    assert module.platform_name == "p2" and module.suffix.suffix_size == 62
    assert module.prefix.end_address == 0x085FFFFC
    assert (module.suffix.product_id, module.suffix.product_version) == (321, 4)
    assert [(d.function, d.index, d.version) for d in module.prefix.dependencies] == [(4, 1, 5301)]
    assert run("validate", str(out), "--platform", "32", "--product-id", "321")[0] == 0


def test_pack_asset_and_hex_output(tmp_path: Path) -> None:
    payload = tmp_path / "cat.txt"
    payload.write_bytes(b"meow")
    out = tmp_path / "cat.hex"
    args = ["pack", str(payload), "-o", str(out), "--platform", "core", "--function", "asset"]
    assert run(*args)[0] == 2  # an asset needs a name
    code, _, _ = run(*args, "--asset-name", "cat.txt", "--address", "0", "--hex")
    assert code == 0
    code, stdout, _ = run("inspect", "--json", str(out))
    [record] = json.loads(stdout)
    assert record["asset_name"] == "cat.txt" and record["module_function"] == "ASSET"


def test_convert_round_trip(app: Path, tmp_path: Path) -> None:
    hex_path = tmp_path / "app.hex"
    code, out, _ = run("convert", str(app), str(hex_path))
    assert code == 0 and "0xd4000" in out
    back = tmp_path / "back.bin"
    assert run("convert", str(hex_path), str(back))[0] == 0
    assert back.read_bytes() == app.read_bytes()
    at_address = tmp_path / "at.hex"
    assert run("convert", str(app), str(at_address), "--address", "0x30000")[0] == 0
    assert run("convert", str(at_address), str(tmp_path / "x.bin"), "--address", "0")[0] == 2


def test_convert_needs_address_for_non_modules(tmp_path: Path) -> None:
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(200))
    code, _, err = run("convert", str(raw), str(tmp_path / "raw.hex"))
    assert code == 2 and "--address" in err
    assert run("convert", str(raw), str(tmp_path / "raw.hex"), "--address", "0x8000000")[0] == 0


def test_convert_refuses_to_overwrite_input(app: Path) -> None:
    original = app.read_bytes()
    assert run("convert", str(app), str(app))[0] == 2
    assert app.read_bytes() == original


def test_debug_shows_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    result = CliRunner().invoke(
        main,
        [
            "--debug",
            "set-product",
            str(empty),
            "--product-id",
            "1",
            "--product-version",
            "1",
            "-o",
            str(tmp_path / "o.bin"),
        ],
    )
    # The traceback is shown, and the exit code is still the error's own.
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "file is empty" in result.stderr


def test_inspect_in_a_real_process(app: Path, tmp_path: Path) -> None:
    fwtool = Path(sys.executable).with_name("fwtool")
    if not fwtool.exists():
        pytest.skip(f"the fwtool console script is not installed next to {sys.executable}")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    proc = subprocess.run(
        [str(fwtool), "inspect", "--json", str(app), str(junk)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    good, bad = json.loads(proc.stdout)
    assert good["product_id"] == 1234
    assert set(bad) == {"file", "error"}
    proc = subprocess.run([str(fwtool), "validate", str(junk)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_set_product_on_device_os_4_app_writes_the_version_and_the_field_only_with_force(tmp_path: Path) -> None:
    app = tmp_path / "os6.bin"
    deps = [Dependency(4, 1, 6200)]
    app.write_bytes(pack_module(b"x" * 64, platform_id=13, product_id=13, product_version=1, dependencies=deps))
    original = app.read_bytes()
    out = tmp_path / "out.bin"
    # A product id into a Device OS 4 app is refused, naming --force; nothing is written.
    code, _, err = run("set-product", str(app), "--product-id", "94", "--product-version", "2", "-o", str(out))
    assert code == 2 and not out.exists() and app.read_bytes() == original
    assert "Device OS >= 4" in err and "platform id 13" in err and "--force" in err and err.count("\n") == 1
    # The version alone is what a Device OS 4 app takes; the field keeps the platform id.
    code, _, err = run("set-product", str(app), "--product-version", "2", "-o", str(out))
    assert code == 0, err
    stamped = parse_module(out.read_bytes())
    assert (stamped.suffix.product_id, stamped.suffix.product_version) == (13, 2) and stamped.crc_ok
    # With --force the field is written, and the note says why that is unusual.
    forced = tmp_path / "forced.bin"
    code, _, err = run(
        "set-product", str(app), "--product-id", "94", "--product-version", "2", "--force", "-o", str(forced)
    )
    assert code == 0 and "--force" in err and "device list" in err
    assert parse_module(forced.read_bytes()).suffix.product_id == 94
    code, stdout, _ = run("inspect", str(app))
    assert "holds the platform id 13" in stdout


def test_set_product_before_device_os_4_needs_the_product_id(app: Path, tmp_path: Path) -> None:
    code, _, err = run("set-product", str(app), "--product-version", "2", "-o", str(tmp_path / "o.bin"))
    assert code == 2 and "--product-id" in err and not (tmp_path / "o.bin").exists()


def test_combined_file_is_detected_and_validated_per_module(tmp_path: Path) -> None:
    from firmware_tools.formats import detect
    from firmware_tools.particle import combine_modules

    boot = pack_module(b"b" * 100, platform_id=12, function=ModuleFunction.BOOTLOADER, index=0, start_address=0xF4000)
    app = pack_module(b"a" * 100, platform_id=12, product_id=9, product_version=1)
    combined = combine_modules([boot, app])
    assert detect(combined).name == "particle-module"
    path = tmp_path / "combined.bin"
    path.write_bytes(combined)
    assert run("validate", str(path), "--product-id", "9", "--platform", "argon")[0] == 0
    code, out, _ = run("validate", str(path), "--product-id", "10")
    assert code == 1 and "module[1].expected-product-id" in out
    code, out, _ = run("inspect", "--json", str(path))
    [record] = json.loads(out)
    assert [m["module_function"] for m in record["modules"]] == ["BOOTLOADER", "USER_PART"]


def test_pack_refuses_a_module_that_is_already_packed(app: Path, tmp_path: Path) -> None:
    out = tmp_path / "twice.bin"
    code, _, err = run("pack", str(app), "-o", str(out), "--platform", "argon")
    assert code == 2 and not out.exists()
    assert "already a Particle module" in err and "user-part for argon" in err and "set-product" in err
    assert err.count("\n") == 1
    # The raw payload packs.
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\x01\x02" * 500)
    code, _, err = run("pack", str(raw), "-o", str(out), "--platform", "argon")
    assert code == 0, err


def test_keygen_refusal_names_force(tmp_path: Path) -> None:
    assert run("keygen", "-o", str(tmp_path / "release"))[0] == 0
    before = (tmp_path / "release.key").read_bytes()
    code, _, err = run("keygen", "-o", str(tmp_path / "release"))
    assert code == 2 and "--force" in err and "refusing to replace a key" in err
    assert (tmp_path / "release.key").read_bytes() == before
    assert run("keygen", "-o", str(tmp_path / "release"), "--force")[0] == 0
    assert (tmp_path / "release.key").read_bytes() != before


def test_verify_usage_says_the_keys_follow_trusted() -> None:
    result = CliRunner().invoke(main, ["verify", "--help"])
    assert "Usage: fwtool verify [OPTIONS] BUNDLE --trusted KEY.pub [KEY.pub]..." in result.output
