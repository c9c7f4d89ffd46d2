"""fwtool keygen / release / verify / inspect on bundles, as a user runs them (CliRunner and a real process)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware_tools import keys
from firmware_tools.cli import main
from firmware_tools.esp import build_app_image
from firmware_tools.particle import parse_module
from tests.firmware_tools.test_bundle_support import (
    argon_bootloader,
    argon_system_part,
    argon_user_part,
    members,
    rezip,
)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boot.bin").write_bytes(argon_bootloader())
    (tmp_path / "system.bin").write_bytes(argon_system_part())
    (tmp_path / "app.bin").write_bytes(argon_user_part())
    return tmp_path


def _keygen(name: str = "acme", *extra: str) -> Result:
    result = run("keygen", "--out", name, *extra)
    assert result.exit_code == 0, result.output
    return result


def _release(*extra: str) -> Result:
    return run(
        "release",
        "app.bin",
        "system.bin",
        "boot.bin",
        "--product-id",
        "1234",
        "--product-version",
        "7",
        "--key",
        "acme.key",
        "-o",
        "acme.fwpkg",
        "--name",
        "Acme",
        *extra,
    )


def test_keygen_writes_a_0600_private_key_and_a_public_key(work: Path) -> None:
    result = _keygen("keys-acme", "--json")
    doc = json.loads(result.output)
    assert doc["algorithm"] == "ed25519" and doc["encrypted"] is False and len(doc["key_id"]) == 16
    assert stat.S_IMODE((work / "keys-acme.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((work / "keys-acme.pub").stat().st_mode) == 0o644
    again = run("keygen", "--out", "keys-acme")
    assert again.exit_code == 2 and "already exists" in again.output
    assert run("keygen", "--out", "keys-acme", "--force", "--algorithm", "ecdsa-p256").exit_code == 0
    assert keys.load_signing_key(work / "keys-acme.key").algorithm is keys.KeyAlgorithm.ECDSA_P256


def test_release_then_verify(work: Path) -> None:
    keygen = _keygen()
    key_id = keygen.output.split()[2]
    result = _release()
    assert result.exit_code == 0, result.output
    assert "wrote acme.fwpkg: product 1234 version 7 for argon" in result.output
    assert "1. boot.bin: bootloader" in result.output
    assert "3. app.bin: user-part at 0xb4000" in result.output and "stamped" in result.output
    assert [n for n, _ in members((work / "acme.fwpkg").read_bytes())] == [
        "manifest.json",
        "manifest.sig",
        "boot.bin",
        "system.bin",
        "app.bin",
    ]
    # The input files are never modified by stamping.
    assert parse_module((work / "app.bin").read_bytes()).suffix.product_id == 0xFFFF
    verified = run("verify", "acme.fwpkg", "--trusted", "acme.pub")
    assert verified.exit_code == 0, verified.output
    assert f"verified, signed by trusted key {key_id}" in verified.output
    listed = run("verify", "acme.fwpkg", "--trusted", "acme.pub", "-v")
    assert "ok   signature:" in listed.output and "ok   app.bin: product-version" in listed.output


def test_verify_json(work: Path) -> None:
    _keygen()
    _release()
    doc = json.loads(run("verify", "acme.fwpkg", "-t", "acme.pub", "--json").output)
    assert doc["ok"] is True and doc["manifest"]["product"] == {"id": 1234, "name": "Acme"}
    assert {c["name"] for c in doc["checks"]} >= {"archive", "signature", "manifest", "signer", "members"}


def test_verify_fails_with_exit_1_naming_what_failed(work: Path) -> None:
    _keygen()
    _keygen("other")
    _release()
    wrong_key = run("verify", "acme.fwpkg", "--trusted", "other.pub")
    assert wrong_key.exit_code == 1
    assert "FAIL signature: the signature does not verify with any trusted key" in wrong_key.output
    both = run("verify", "acme.fwpkg", "--trusted", "other.pub", "--trusted", "acme.pub")
    assert both.exit_code == 0
    bundle = (work / "acme.fwpkg").read_bytes()
    (work / "extra.fwpkg").write_bytes(rezip(bundle, add={"evil.bin": b"x"}))
    extra = run("verify", "extra.fwpkg", "-t", "acme.pub", "--json")
    assert extra.exit_code == 1
    failed = [c for c in json.loads(extra.output)["checks"] if c["ok"] is False]
    assert [c["name"] for c in failed] == ["members"]
    app = dict(members(bundle))["app.bin"]
    (work / "flip.fwpkg").write_bytes(rezip(bundle, replace={"app.bin": app[:-1] + bytes([app[-1] ^ 1])}))
    flipped = run("verify", "flip.fwpkg", "-t", "acme.pub")
    assert flipped.exit_code == 1 and "FAIL app.bin: manifest-hash" in flipped.output


def test_verify_exit_2_for_what_is_not_a_bundle(work: Path) -> None:
    _keygen()
    result = run("verify", "app.bin", "--trusted", "acme.pub")
    assert result.exit_code == 2 and "not a release bundle" in result.output
    as_json = run("verify", "app.bin", "--trusted", "acme.pub", "--json")
    assert as_json.exit_code == 2 and json.loads(as_json.output)["ok"] is False
    bad_key = run("verify", "app.bin", "--trusted", "app.bin")
    assert bad_key.exit_code == 2 and "not a PEM public key" in bad_key.output


def test_insecure_key_file_is_refused_unless_allowed(work: Path) -> None:
    _keygen()
    (work / "acme.key").chmod(0o644)
    refused = _release()
    assert refused.exit_code == 2
    assert "mode 0644" in refused.output and "chmod 600" in refused.output and "--allow-insecure-key" in refused.output
    assert not (work / "acme.fwpkg").exists()
    assert _release("--allow-insecure-key").exit_code == 0


def test_passphrase_protected_key(work: Path) -> None:
    env = {"ACME_PASS": "open sesame"}
    result = run("keygen", "--out", "acme", "--passphrase-env", "ACME_PASS", env=env)
    assert result.exit_code == 0 and "passphrase-protected" in result.output
    assert b"ENCRYPTED" in (work / "acme.key").read_bytes()
    ok = run(
        "release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", "acme.key",
        "-o", "env.fwpkg", "--passphrase-env", "ACME_PASS", env=env,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    prompted = run(
        "release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", "acme.key",
        "-o", "prompt.fwpkg", input="open sesame\n",
    )  # fmt: skip
    assert prompted.exit_code == 0, prompted.output
    wrong = run(
        "release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", "acme.key",
        "-o", "wrong.fwpkg", input="nope\n",
    )  # fmt: skip
    assert wrong.exit_code == 2 and "passphrase is wrong" in wrong.output
    assert not (work / "wrong.fwpkg").exists()


def test_keygen_prompts_for_a_passphrase(work: Path) -> None:
    result = run("keygen", "--out", "p", "--passphrase", input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert b"ENCRYPTED" in (work / "p.key").read_bytes()


def test_release_refused_writes_nothing_and_exits_1(work: Path) -> None:
    _keygen()
    (work / "app.bin").write_bytes(argon_user_part(product_id=94, product_version=3))
    result = _release()
    assert result.exit_code == 1
    assert "release refused" in result.output and "app.bin: product-id: product id 94" in result.output
    assert not (work / "acme.fwpkg").exists()


def test_release_of_esp_images_at_addresses(work: Path) -> None:
    _keygen()
    (work / "app.bin").write_bytes(build_app_image(chip="esp32c3", version="3.1.0", payload_size=512))
    result = run(
        "release", "0x10000=app.bin", "--product-id", "5", "--product-version", "31",
        "--key", "acme.key", "-o", "esp.fwpkg", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["manifest"]["target"] == {"family": "esp", "chip": "esp32c3"}
    assert doc["manifest"]["images"][0]["esp"]["app_version"] == "3.1.0"
    assert doc["manifest"]["images"][0]["address"] == 0x10000
    assert run("verify", "esp.fwpkg", "-t", "acme.pub").exit_code == 0
    unaddressed = run(
        "release", "app.bin", "--product-id", "5", "--product-version", "31", "--key", "acme.key", "-o", "x.fwpkg"
    )
    assert unaddressed.exit_code == 2


def test_release_usage_errors(work: Path) -> None:
    _keygen()
    assert _release_to("acme.zip").exit_code == 2
    same = run(
        "release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", "acme.key", "-o", "app.bin"
    )
    assert same.exit_code == 2


def _release_to(out: str) -> Result:
    return run("release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", "acme.key", "-o", out)


def test_inspect_a_bundle(work: Path) -> None:
    _keygen()
    _release()
    text = run("inspect", "acme.fwpkg")
    assert text.exit_code == 0 and "release bundle for product 1234 (Acme)" in text.output
    doc = json.loads(run("inspect", "acme.fwpkg", "--json").output)[0]
    assert doc["format"] == "release-bundle" and doc["manifest"]["images"][2]["name"] == "app.bin"
    assert doc["images"][2]["inspect"]["format"] == "particle-module"


def test_private_key_material_is_never_printed_or_logged(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"ACME_PASS": "hunter2-passphrase"}
    outputs = [
        run("keygen", "--out", "plain").output,
        run("keygen", "--out", "plain", "--json", "--force").output,
        run("keygen", "--out", "enc", "--passphrase-env", "ACME_PASS", env=env).output,
    ]
    secrets: list[str] = [env["ACME_PASS"]]
    for name in ("plain.key", "enc.key"):
        body = [ln for ln in (work / name).read_text().splitlines() if not ln.startswith("-----")]
        secrets += [ln[:24] for ln in body if len(ln) >= 24]
    assert len(secrets) >= 3
    for key in ("plain.key", "enc.key"):
        base = ["release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", key, "-o", "o.fwpkg"]
        outputs.append(run(*base).output)
        outputs.append(run(*base, "--json", "--passphrase-env", "ACME_PASS", env=env).output)
    (work / "plain.key").chmod(0o640)
    outputs.append(_release_with("plain.key").output)
    (work / "broken.key").write_text((work / "plain.key").read_text().replace("A", "B"))
    (work / "broken.key").chmod(0o600)
    outputs.append(_release_with("broken.key").output)
    outputs.append(run("verify", "o.fwpkg", "--trusted", "plain.key").output)
    # Even with --debug, the error and its traceback carry no key bytes.
    debug = CliRunner().invoke(main, ["--debug", "release", "app.bin", "--product-id", "1", "--product-version",
                                      "1", "--key", "broken.key", "-o", "d.fwpkg"])  # fmt: skip
    assert debug.exception is not None
    outputs.append("".join(traceback.format_exception(debug.exception)))
    outputs.append(caplog.text)
    joined = "\n".join(outputs)
    assert "BEGIN PRIVATE KEY" not in joined and "BEGIN ENCRYPTED" not in joined
    for secret in secrets:
        assert secret not in joined


def _release_with(key: str) -> Result:
    return run("release", "app.bin", "--product-id", "1", "--product-version", "1", "--key", key, "-o", "z.fwpkg")


def _fwtool() -> list[str]:
    script = Path(sys.executable).parent / "fwtool"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from firmware_tools.cli import main; main()"]


def test_real_process_exit_codes(work: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    subprocess.run([*_fwtool(), "keygen", "--out", "acme"], check=True, env=env, capture_output=True)
    made = subprocess.run(
        [*_fwtool(), "release", "app.bin", "boot.bin", "--product-id", "9", "--product-version", "2",
         "--key", "acme.key", "-o", "acme.fwpkg"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    ok = subprocess.run([*_fwtool(), "verify", "acme.fwpkg", "-t", "acme.pub"], env=env, capture_output=True)
    assert ok.returncode == 0
    (work / "acme.fwpkg").write_bytes(rezip((work / "acme.fwpkg").read_bytes(), replace={"boot.bin": None}))
    bad = subprocess.run(
        [*_fwtool(), "verify", "acme.fwpkg", "-t", "acme.pub"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "boot.bin is listed but not in the bundle" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_sign_with_a_key_held_in_the_environment(work: Path) -> None:
    _keygen()
    env = {"FW_KEY": (work / "acme.key").read_text()}
    (work / "acme.key").unlink()
    base = ["release", "app.bin", "--product-id", "3", "--product-version", "4", "-o", "env.fwpkg"]
    made = run(*base, "--key-env", "FW_KEY", env=env)
    assert made.exit_code == 0, made.output
    assert run("verify", "env.fwpkg", "-t", "acme.pub").exit_code == 0
    assert run(*base).exit_code == 2  # neither --key nor --key-env
    assert run(*base, "--key-env", "FW_KEY", "--key", "x.key", env=env).exit_code == 2
    missing = run(*base, "--key-env", "NOT_SET")
    assert missing.exit_code == 2 and "NOT_SET is not set" in missing.output
    broken = {"FW_KEY": env["FW_KEY"].replace("A", "B")}
    refused = run(*base, "--key-env", "FW_KEY", env=broken)
    assert refused.exit_code == 2 and "$FW_KEY: not a readable PEM private key" in refused.output
    body = [ln for ln in env["FW_KEY"].splitlines() if not ln.startswith("-----")]
    assert all(ln[:24] not in refused.output + made.output for ln in body)


def test_encrypted_key_in_the_environment(work: Path) -> None:
    env = {"PW": "pass phrase"}
    assert run("keygen", "--out", "enc", "--passphrase-env", "PW", env=env).exit_code == 0
    env["FW_KEY"] = (work / "enc.key").read_text()
    base = ["release", "app.bin", "--product-id", "3", "--product-version", "4", "-o", "e.fwpkg", "--key-env", "FW_KEY"]
    assert run(*base, "--passphrase-env", "PW", env=env).exit_code == 0
    assert run(*base, env=env, input="pass phrase\n").exit_code == 0


def test_release_security_version_is_signed_shown_and_absent_when_unset(work: Path) -> None:
    _keygen()
    result = _release("--security-version", "3")
    assert result.exit_code == 0, result.output
    assert "version 7 security version 3 for argon" in result.output
    verified = run("verify", "acme.fwpkg", "--trusted", "acme.pub")
    assert verified.exit_code == 0, verified.output
    assert "version 7 (security version 3)" in verified.output
    doc = json.loads(run("verify", "acme.fwpkg", "-t", "acme.pub", "--json").output)
    assert doc["manifest"]["security_version"] == 3
    assert list(doc["manifest"])[:4] == ["format_version", "product", "product_version", "security_version"]
    assert "security version 3" in run("inspect", "acme.fwpkg").output
    # A bundle without one carries no key at all, so bundles made before the field existed still verify.
    assert _release().exit_code == 0
    doc = json.loads(run("verify", "acme.fwpkg", "-t", "acme.pub", "--json").output)
    assert doc["ok"] is True and "security_version" not in doc["manifest"]
    bad = _release("--security-version", "70000")
    assert bad.exit_code == 2
