"""Conformance with the reference parser: every fixture's `fwtool inspect --json` agrees with its .expected.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from firmware_tools.cli import main
from firmware_tools.errors import FormatError
from firmware_tools.particle import (
    combine_modules,
    decompress_module,
    pack_asset,
    parse_module,
    split_combined,
    stamp_product,
    summary_lines,
)
from tests.conftest import fixture_dir, fixture_files

MODULES = fixture_files("particle")


def _expected(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    return result


def _read(name: str) -> bytes:
    return (fixture_dir("particle") / name).read_bytes()


@pytest.fixture(scope="module")
def inspected() -> dict[str, dict[str, Any]]:
    """One `fwtool inspect --json` run over the whole corpus, keyed by file name."""
    folder = fixture_dir("particle")
    files = sorted(str(p) for p in folder.glob("*.bin"))
    result = CliRunner().invoke(main, ["inspect", "--json", *files])
    records = json.loads(result.output)
    assert len(records) == len(files)
    # Some fixtures are not modules at all, so the run as a whole reports unusable input.
    assert result.exit_code == 2
    return {Path(r["file"]).name: r for r in records}


def _ext_matches(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours["type"] == theirs["type"]
    assert ours["length"] == theirs["length"]
    assert ours["offset"] == theirs["offset"]
    decoded = {
        "productId": "product_id",
        "productVersion": "product_version",
        "hash": "hash",
        "hashType": "hash_type",
        "name": "name",
        "securityMode": "mode",
        "certificate": "certificate",
    }
    for their_key, our_key in decoded.items():
        if their_key in theirs:
            assert ours[our_key] == theirs[their_key], their_key
    for their_key, our_key in (
        ("moduleStartAddress", "module_start_address"),
        ("dynalibLoadAddress", "dynalib_load_address"),
        ("dynalibStartAddress", "dynalib_start_address"),
    ):
        if their_key in theirs:
            assert ours[our_key] == int(theirs[their_key], 16)


def assert_agrees(ours: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every key the issue names, against the reference's parse (``derived`` plus raw prefix/suffix)."""
    d, prefix, suffix = expected["derived"], expected["prefixInfo"], expected["suffixInfo"]
    assert ours["format"] == "particle-module"
    assert ours["platform_id"] == d["platformID"]
    assert ours["platform"] == d["platformName"]
    assert ours["module_function"] == d["moduleFunctionName"]
    assert ours["module_function_id"] == d["moduleFunction"]
    assert ours["module_index"] == d["moduleIndex"]
    assert ours["module_version"] == d["moduleVersion"]
    assert ours["flags"] == d["moduleFlagNames"]
    assert ours["flags_value"] == d["moduleFlags"]
    assert ours["reserved"] == prefix["reserved"]
    assert [(x["function"], x["index"], x["version"]) for x in ours["dependencies"]] == [
        (x["func"], x["index"], x["version"]) for x in d["dependencies"]
    ]
    assert ours["start_address"] == d["moduleStartAddr"] == int(prefix["moduleStartAddy"], 16)
    assert ours["end_address"] == d["moduleEndAddr"] == int(prefix["moduleEndAddy"], 16)
    assert ours["prefix_offset"] == d["prefixOffset"]
    assert ours["prefix_size"] == d["prefixSize"]
    no_product = d["productId"] == -1
    assert ours["product_id"] == (None if no_product else d["productId"])
    assert ours["product_version"] == (None if no_product else d["productVersion"])
    assert ours["suffix_size"] == d["suffixSize"]
    assert ours["suffix_reserved"] == suffix["reserved"]
    assert ours["sha256_stored"] == d["shaStored"]
    assert ours["sha256_computed"] == d["shaComputed"]
    assert ours["sha256_ok"] == d["shaOk"]
    assert ours["crc32_stored"] == d["crcStored"] == expected["crc"]["storedCrc"]
    assert ours["crc32_computed"] == d["crcComputed"]
    assert ours["crc32_ok"] == d["crcOk"] == expected["crc"]["ok"]
    assert ours["size_ok"] == d["sizeMatchesPrefix"]
    assert ours["size_from_prefix"] == d["sizeFromPrefix"]
    their_suffix_ext = suffix.get("extensions", [])
    assert len(ours["suffix_extensions"]) == len(their_suffix_ext)
    for mine, theirs in zip(ours["suffix_extensions"], their_suffix_ext, strict=True):
        _ext_matches(mine, theirs)
    their_prefix_ext = prefix.get("extensions", [])
    assert len(ours["prefix_extensions"]) == len(their_prefix_ext)
    for mine, theirs in zip(ours["prefix_extensions"], their_prefix_ext, strict=True):
        _ext_matches(mine, theirs)
    assert [(a["name"], a["hash"], a["hash_type"]) for a in ours["asset_dependencies"]] == [
        (a["name"], a["hash"], a["hashType"]) for a in expected.get("assets", [])
    ]
    security = expected.get("security")
    assert ours["security_mode"] == (None if security is None else security["mode"])


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_inspect_agrees_with_reference(path: Path, inspected: dict[str, dict[str, Any]]) -> None:
    expected = _expected(path)
    ours = inspected[path.name]
    if "parseError" in expected:
        assert "error" in ours, f"the reference fails ({expected['parseError']}) but we parsed it"
        with pytest.raises(FormatError):
            parse_module(path.read_bytes(), name=path.name)
        return
    if "error" in ours:
        # Allowed only where the reference merely guesses at a file that is no module and its CRC fails.
        assert not expected["derived"]["crcOk"], ours["error"]
        assert expected["prefixInfo"]["prefixOffset"] not in (0, 0x20, 0xC0, 0x10C, 0x184, 0x200)
        assert "not a" in ours["error"]
        with pytest.raises(FormatError, match="not a valid Particle module"):
            parse_module(path.read_bytes(), name=path.name)
        return
    assert_agrees(ours, expected)
    is_container = bool({"COMPRESSED", "COMBINED"} & set(ours["flags"]))
    assert ("modules" in ours) == is_container


def test_compressed_modules_hold_the_original(inspected: dict[str, dict[str, Any]]) -> None:
    folder = fixture_dir("particle")
    for original in ("080_user-part-xenon", "argon-softdevice-6.1.1"):
        record = inspected[f"synth-compressed-{original}.bin"]
        [inner] = record["modules"]
        assert_agrees(inner, _expected(folder / f"{original}.bin"))
        restored = decompress_module(_read(f"synth-compressed-{original}.bin"))
        assert restored == _read(f"{original}.bin")


def test_compressed_asset_restores_the_raw_asset() -> None:
    assert decompress_module(_read("synth-asset-hello-compressed.bin")) == _read("synth-asset-hello-raw.bin")
    module = parse_module(_read("synth-asset-hello-compressed.bin"))
    assert module.asset_name == "hello.txt"
    assert module.inner[0].asset_name == "hello.txt"


def test_combined_file_lists_each_module(inspected: dict[str, dict[str, Any]]) -> None:
    folder = fixture_dir("particle")
    record = inspected["synth-combined-argon-bootloader-620+softdevice-6.1.1.bin"]
    first, second = record["modules"]
    assert first["module_function"] == "BOOTLOADER" and first["flags"] == ["COMBINED"]
    assert first["crc32_ok"] and first["sha256_ok"] and first["size_ok"]
    assert_agrees(second, _expected(folder / "argon-softdevice-6.1.1.bin"))
    combined = _read("synth-combined-argon-bootloader-620+softdevice-6.1.1.bin")
    parts = split_combined(combined)
    assert parts[1] == _read("argon-softdevice-6.1.1.bin")
    assert combine_modules([_read("argon-bootloader-620.bin"), _read("argon-softdevice-6.1.1.bin")]) == combined


def test_pack_asset_is_byte_identical_to_reference_encoder() -> None:
    raw = _read("synth-asset-hello-raw.bin")
    module = parse_module(raw)
    payload = raw[module.prefix_size : module.size - 4 - module.suffix.suffix_size]
    assert pack_asset(payload, "hello.txt") == raw


@pytest.mark.parametrize("stem", ["electron_tinker", "argon-tinker-620", "p2-tinker@5.3.1"])
def test_set_product_matches_reference_encoder(stem: str, tmp_path: Path) -> None:
    source = fixture_dir("particle") / f"{stem}.bin"
    out = tmp_path / "stamped.bin"
    args = ["set-product", str(source), "--product-id", "94", "--product-version", "3", "-o", str(out)]
    if parse_module(source.read_bytes()).runs_device_os_4:
        # Device OS >= 4 has no PRODUCT_ID: the field is written only when asked for with --force.
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code == 2 and "--force" in refused.output and not out.exists()
        args.append("--force")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    reference = _read(f"{stem}.pid94v3.bin")
    assert out.read_bytes() == reference
    assert stamp_product(source.read_bytes(), product_id=94, product_version=3) == reference


def test_summary_reads_like_particle_binary_inspect() -> None:
    lines = [line.strip() for line in summary_lines(parse_module(_read("product_firmware.bin")))]
    assert "CRC is ok (e309c618)" in lines
    assert "This is an application module number 1 at version 6" in lines
    assert "It is firmware for product id 8178 at version 13" in lines
    assert "It depends on a system module number 2 at version 1201" in lines
    soft = [line.strip() for line in summary_lines(parse_module(_read("argon-softdevice-6.1.1.bin")))]
    assert "This is a radio stack module number 0 at version 182" in soft
    assert "It also depends on a bootloader number 0 at version 311" in soft


def test_device_os_4_product_id_is_explained() -> None:
    module = parse_module(_read("tracker-tinker@5.3.1.bin"))
    assert module.product_id_meaning == "platform-id"
    text = "\n".join(summary_lines(module))
    assert "holds the platform id 26" in text and "Device OS >= 4" in text
    # Version-stamping keeps the stored id.
    stamped = parse_module(stamp_product(_read("tracker-tinker@5.3.1.bin"), product_id=None, product_version=9))
    assert (stamped.suffix.product_id, stamped.suffix.product_version) == (26, 9)
    assert stamped.crc_ok and stamped.sha_ok


def test_create_module_payload_hash_is_known() -> None:
    module = parse_module(_read("argon-ncp-firmware-0.0.5-ota.bin"))
    assert not module.sha_file_ok and module.sha_payload_only and module.sha_ok


def test_extended_product_id_is_read_both_ways() -> None:
    module = parse_module(_read("extended-product-id.bin"))
    assert module.suffix.product_id == 0xAABB
    assert module.suffix.product_id32 == 0xAABBCCDD
