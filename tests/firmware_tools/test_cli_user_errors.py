"""fwtool on the wrong thing, the way users get it wrong: each mistake is one line, the right exit
code, the option or file named, and nothing written over an input."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from firmware_tools.cli import COMMANDS, main
from firmware_tools.esp import build_app_image
from firmware_tools.particle import pack_module


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.bin"
    path.write_bytes(pack_module(bytes(range(256)) * 8, platform_id=12, product_id=1234, product_version=7))
    return path


@pytest.fixture
def esp_app(tmp_path: Path) -> Path:
    path = tmp_path / "esp-app.bin"
    path.write_bytes(build_app_image(chip="esp32s3", version="1.0.0"))
    return path


def test_outputs_are_readable_like_any_file_the_user_makes(app: Path, tmp_path: Path) -> None:
    out = tmp_path / "stamped.bin"
    code, _, err = run("set-product", str(app), "--product-id", "5", "--product-version", "2", "-o", str(out))
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_pack_never_writes_over_its_payload(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x42" * 1000)
    code, _, err = run("pack", str(payload), "--platform", "argon", "-o", str(payload))
    assert code == 2
    assert "refusing to overwrite the input" in err and "payload.bin" in err
    assert payload.read_bytes() == b"\x42" * 1000


def test_pack_says_which_option_is_wrong(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x42" * 1000)
    out = str(tmp_path / "m.bin")
    code, _, err = run("pack", str(payload), "--platform", "argonn", "-o", out)
    assert code == 2 and "--platform" in err and "unknown platform 'argonn'" in err
    code, _, err = run("pack", str(payload), "--platform", "argon", "--function", "system-part", "-o", out)
    assert code == 2 and "pass --address" in err
    code, _, err = run("pack", str(payload), "--platform", "argon", "--dependency", "system-part:1:99999", "-o", out)
    assert code == 2 and "--dependency" in err and "version 99999" in err
    assert not Path(out).exists()


def test_convert_refuses_a_target_named_for_the_other_format(app: Path, tmp_path: Path) -> None:
    hex_file = tmp_path / "app.hex"
    assert run("convert", str(app), str(hex_file))[0] == 0
    # Swapped arguments: the HEX would be converted to a binary named .hex.
    code, _, err = run("convert", str(hex_file), str(tmp_path / "back.hex"))
    assert code == 2 and "swap SOURCE and TARGET" in err
    code, _, err = run("convert", str(app), str(tmp_path / "other.bin"))
    assert code == 2 and "Intel HEX despite its name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.bin", "app.hex"]


def test_validate_unknown_chip_or_platform_is_a_usage_error(esp_app: Path) -> None:
    code, _, err = run("validate", str(esp_app), "--chip", "esp99")
    assert code == 2 and "--chip" in err and "unknown chip 'esp99'" in err
    code, _, err = run("validate", str(esp_app), "--platform", "nosuch")
    assert code == 2 and "--platform" in err


def test_validate_an_esp_image_as_a_particle_binary_fails(esp_app: Path) -> None:
    code, out, _ = run("validate", str(esp_app), "--platform", "argon", "--product-version", "3")
    assert code == 1
    assert "FAILED: expected-platform, expected-product-version" in out
    code, out, _ = run("validate", str(esp_app), "--chip", "ESP32-S3", "--version", "1.0.0")
    assert code == 0, out


def test_a_folder_among_the_files_is_one_unusable_file(app: Path, tmp_path: Path) -> None:
    folder = tmp_path / "build"
    folder.mkdir()
    for command in ("inspect", "validate"):
        code, out, _ = run(command, "--json", str(app), str(folder))
        records = json.loads(out)
        assert code == 2
        assert [r["file"] for r in records] == [str(app), str(folder)]
        assert "error" not in records[0]
        assert records[1]["error"] == f"{folder}: is a folder, not a firmware file"
        code, _, err = run(command, str(folder))
        assert code == 2 and "is a folder" in err and "Usage:" not in err


def test_particle_commands_name_the_format_they_were_given(esp_app: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    code, _, err = run("set-product", str(esp_app), "--product-id", "1", "--product-version", "2", "-o", str(out))
    assert code == 2
    assert "this is an ESP image, not a Particle module" in err and "set-version" in err
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.cpp").write_text("PRODUCT_VERSION(2);\n")
    code, _, err = run("check-source", str(source), str(esp_app))
    assert code == 2 and "this is an ESP image, not a Particle module" in err
    assert not out.exists()


def test_a_module_cut_short_is_called_that(app: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes(app.read_bytes()[:1500])
    code, out, _ = run("inspect", "--json", str(cut))
    [record] = json.loads(out)
    assert code == 2
    assert "looks like a Particle module for argon cut short" in record["error"]
    assert f"prefix says {app.stat().st_size} bytes, the file has 1500" in record["error"]


@pytest.mark.parametrize("keep", [30, 0x200, -40, -10])
def test_an_esp_image_cut_short_is_called_that_with_its_offset(esp_app: Path, tmp_path: Path, keep: int) -> None:
    data = esp_app.read_bytes()
    # Cut inside the first segment, inside the code, before the checksum, inside the SHA-256.
    cut_at = keep if keep > 0 else len(data) + keep
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:cut_at])
    code, _, err = run("validate", str(cut))
    assert code == 2
    assert err.count("\n") == 1 and "at offset 0x" in err
    assert "cut short" in err or "truncated" in err


def test_ciphertext_is_named_as_a_flash_encrypted_image(tmp_path: Path) -> None:
    import random

    blob = tmp_path / "encrypted.bin"
    blob.write_bytes(random.Random(1).randbytes(8192).replace(b"\xe9", b"\x00", 1))
    code, _, err = run("inspect", str(blob))
    assert code == 2 and "flash-encrypted ESP image" in err


def test_debug_works_after_the_command_name_too(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    args = ["set-product", str(empty), "--product-id", "1", "--product-version", "1", "-o", str(tmp_path / "o.bin")]
    quiet = CliRunner().invoke(main, args)
    assert quiet.exit_code == 2 and isinstance(quiet.exception, SystemExit)
    loud = CliRunner().invoke(main, [*args, "--debug"])
    assert loud.exit_code == 2 and "Traceback" in loud.stderr and "file is empty" in loud.stderr
    assert "--debug" in CliRunner().invoke(main, ["verify", "--help"]).output


def test_passphrase_prompt_without_input_is_a_usage_error_not_aborted(tmp_path: Path) -> None:
    code, _, err = run("keygen", "--out", str(tmp_path / "k"), "--passphrase", input="")
    assert code == 2
    assert "no passphrase" in err and "--passphrase-env" in err and "Aborted" not in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_at_the_passphrase_prompt_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    fwtool = Path(sys.executable).with_name("fwtool")
    proc = subprocess.Popen(
        [str(fwtool), "keygen", "--out", str(tmp_path / "k"), "--passphrase"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen = b""
    while b"Passphrase" not in seen:  # wait until it is really asking
        chunk = proc.stderr.read1(1024)
        assert chunk, seen
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (seen + err).decode()
    assert b"fwtool: interrupted" in err and b"Aborted" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def signed(tmp_path: Path, app: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """acme.fwpkg signed with acme.key, and other.pub that did not sign it, in the working folder."""
    monkeypatch.chdir(tmp_path)
    for name in ("acme", "other"):
        assert run("keygen", "--out", name)[0] == 0
    code, _, err = run(
        "release", "app.bin", "--product-id", "1234", "--product-version", "7", "--key", "acme.key", "-o", "acme.fwpkg"
    )
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "acme.fwpkg").stat().st_mode) == 0o644
    return tmp_path / "acme.fwpkg"


def test_verify_takes_several_keys_after_one_trusted(signed: Path) -> None:
    code, out, err = run("verify", "acme.fwpkg", "--trusted", "other.pub", "acme.pub")
    assert code == 0, err
    assert "verified, signed by trusted key" in out
    assert run("verify", "acme.fwpkg", "--trusted", "other.pub", "--trusted", "acme.pub")[0] == 0
    assert run("verify", "acme.fwpkg", "--trusted", "other.pub")[0] == 1


def test_verify_with_the_keys_first_says_the_bundle_comes_first(signed: Path) -> None:
    code, _, err = run("verify", "--trusted", "other.pub", "acme.pub", "acme.fwpkg")
    assert code == 2 and "acme.pub is a key, not a bundle: the bundle comes first" in err


def test_verify_with_the_private_key_says_to_give_the_public_one(signed: Path) -> None:
    code, _, err = run("verify", "acme.fwpkg", "--trusted", "acme.key")
    assert code == 2
    assert "acme.key: this is a private key, not a public key" in err and "NAME.pub" in err
    assert "BEGIN" not in err


def test_release_says_how_to_give_esp_images_and_particle_modules(signed: Path, esp_app: Path) -> None:
    base = ["--product-id", "1234", "--product-version", "7", "--key", "acme.key", "-o", "x.fwpkg"]
    code, _, err = run("release", str(esp_app), *base)
    assert code == 2 and "is an ESP image: give the flash address" in err and f"0x10000={esp_app}" in err
    code, _, err = run("release", "0x10000=app.bin", *base)
    assert code == 2 and "app.bin is a Particle module, which states its own address" in err
    assert not Path("x.fwpkg").exists()


def test_a_partition_table_is_inspected_and_validated_on_its_own(tmp_path: Path) -> None:
    from firmware_tools.bundle.partition_table import Partition, build_partition_table

    table = tmp_path / "partitions.bin"
    table.write_bytes(
        build_partition_table(
            [Partition("nvs", 1, 2, 0x9000, 0x6000, 0), Partition("factory", 0, 0, 0x10000, 0x100000, 0)]
        )
    )
    code, out, _ = run("inspect", "--json", str(table))
    [record] = json.loads(out)
    assert code == 0 and record["format"] == "esp-partition-table" and record["md5_ok"] is True
    assert [p["label"] for p in record["partitions"]] == ["nvs", "factory"]
    code, out, _ = run("inspect", str(table))
    assert code == 0 and "factory" in out and "MD5 ok" in out
    assert run("validate", str(table))[0] == 0
    code, out, _ = run("validate", str(table), "--platform", "argon")
    assert code == 1 and "expected-platform" in out


@pytest.mark.parametrize("command", ["set-product", "set-version", "pack", "release", "keygen"])
def test_every_writing_command_takes_o_output_and_out(command: str) -> None:
    from firmware_tools.cli import main as group

    ctx = click.Context(group)
    cmd = group.get_command(ctx, command)
    assert cmd is not None
    spellings = {opt for p in cmd.params for opt in p.opts}
    assert {"-o", "--output", "--out"} <= spellings


def test_output_spellings_work_as_typed(app: Path, tmp_path: Path) -> None:
    for spelling in ("-o", "--output", "--out"):
        out = tmp_path / f"s{spelling.strip('-')}.bin"
        code, _, err = run("set-product", str(app), "--product-id", "1", "--product-version", "2", spelling, str(out))
        assert code == 0 and out.exists(), err


def test_a_damaged_module_is_never_resealed_by_set_product_set_version_or_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stamping recomputes SHA-256 and CRC-32: on a corrupted copy that would make the damage look valid.
    monkeypatch.chdir(tmp_path)
    clean = pack_module(bytes(range(256)) * 8, platform_id=12)  # product fields unset: release would stamp
    damaged = bytearray(clean)
    damaged[500] ^= 0x01
    Path("app.bin").write_bytes(bytes(damaged))
    code, _, err = run("set-product", "app.bin", "--product-id", "5", "--product-version", "2", "-o", "s.bin")
    assert code == 2 and "CRC-32 does not match" in err and "refusing to re-seal" in err
    assert run("set-version", "app.bin", "2", "-o", "s.bin")[0] == 2
    assert run("keygen", "--out", "k")[0] == 0
    code, _, err = run(
        "release", "app.bin", "--product-id", "5", "--product-version", "2", "--key", "k.key", "-o", "r.fwpkg"
    )
    assert code == 2 and "refusing to re-seal" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.bin", "k.key", "k.pub"]


def test_set_version_on_an_app_without_product_fields_set(tmp_path: Path) -> None:
    from firmware_tools.particle import Dependency, parse_module

    # Device OS 6 app built without PRODUCT_VERSION (0/0): PRODUCT_VERSION(v) would have put the
    # platform id in the id field, and so does set-version.
    dos6 = tmp_path / "dos6.bin"
    dos6.write_bytes(
        pack_module(
            b"\x00" * 512, platform_id=12, product_id=0, product_version=0, dependencies=[Dependency(4, 1, 6200)]
        )
    )
    out = tmp_path / "out.bin"
    code, _, err = run("set-version", str(dos6), "7", "-o", str(out))
    assert code == 0, err
    module = parse_module(out.read_bytes())
    assert (module.suffix.product_id, module.suffix.product_version) == (12, 7)
    assert module.product_id_meaning == "platform-id" and module.crc_ok and module.sha_ok
    # Device OS 1.x app without product fields set: a version alone would make a half product app.
    old = tmp_path / "dos1.bin"
    old.write_bytes(pack_module(b"\x00" * 512, platform_id=6, dependencies=[Dependency(4, 2, 1201)]))
    code, _, err = run("set-version", str(old), "7", "-o", str(tmp_path / "old-out.bin"))
    assert code == 2 and "no product id" in err and "fwtool set-product" in err
    assert not (tmp_path / "old-out.bin").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_option_explains_itself_in_help(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    cmd = main.get_command(click.Context(main), command)
    assert cmd is not None and cmd.help
    undocumented = [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == []
    # Every command prints something worth automating, so every one has --json.
    assert "--json" in out


def test_inspect_and_validate_of_a_bundle_point_to_verify_for_the_signature(signed: Path) -> None:
    code, out, _ = run("inspect", "acme.fwpkg")
    assert code == 0
    assert "release bundle for product 1234, product version 7" in out
    assert "not checked: use fwtool verify" in out
    code, out, _ = run("validate", "acme.fwpkg")
    assert code == 0 and "n/a  signature:" in out and "fwtool verify BUNDLE --trusted KEY.pub" in out


def test_release_with_the_public_key_says_to_give_the_private_one(signed: Path) -> None:
    code, _, err = run(
        "release", "app.bin", "--product-id", "1234", "--product-version", "8", "--key", "acme.pub", "-o", "v8.fwpkg"
    )
    assert code == 2
    assert "acme.pub: this is a public key; signing needs the private key" in err and "chmod" not in err
    assert not Path("v8.fwpkg").exists()


def test_release_takes_an_esp_image_in_intel_hex_at_the_address_it_carries(signed: Path, esp_app: Path) -> None:
    from firmware_tools.ihex import bin_to_hex

    Path("app.hex").write_bytes(bin_to_hex(esp_app.read_bytes(), 0x10000))
    base = ["--product-id", "1234", "--product-version", "7", "--key", "acme.key"]
    code, _, err = run("release", "app.hex", *base, "-o", "esp.fwpkg", "--json")
    assert code == 0, err
    code, out, _ = run("verify", "esp.fwpkg", "--trusted", "acme.pub", "--json")
    record = json.loads(out)
    assert code == 0 and [(i["name"], i["address"]) for i in record["manifest"]["images"]] == [("app.bin", 0x10000)]
    code, _, err = run("release", "0x20000=app.hex", *base, "-o", "esp2.fwpkg")
    assert code == 2 and "placing the image at 0x10000, but 0x20000=app.hex says otherwise" in err


def test_validate_an_intel_hex_that_places_a_module_elsewhere_fails(app: Path, tmp_path: Path) -> None:
    from firmware_tools.ihex import bin_to_hex
    from firmware_tools.particle import parse_module

    start = parse_module(app.read_bytes()).prefix.start_address
    good, bad = tmp_path / "good.hex", tmp_path / "bad.hex"
    good.write_bytes(bin_to_hex(app.read_bytes(), start))
    bad.write_bytes(bin_to_hex(app.read_bytes(), start + 0x1000))
    code, out, _ = run("validate", str(good))
    assert code == 0 and "ok   hex-address" in out
    code, out, _ = run("validate", str(bad))
    assert code == 1 and "FAILED: hex-address" in out and f"but it starts at {start:#x}" in out


def test_inspecting_one_particle_module_loads_no_esptool_crypto_or_zip(app: Path) -> None:
    # What keeps `fwtool inspect --json` on one file under 0.15 s (bench/fwtool_inspect.py).
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from firmware_tools.cli import main\n"
        f"try:\n    main(['inspect', '--json', {str(app)!r}])\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('esptool', 'cryptography', 'zipfile', 'intelhex')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
