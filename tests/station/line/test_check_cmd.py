"""station check: a good profile and bundle pass and say what a run does; any problem exits 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.demo.sample_release import make_sample_release


def _profile(tmp_path: Path, extra: str = "") -> Path:
    release = make_sample_release(tmp_path, target="argon", product_id=1234, product_version=7)
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "line-1"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        f'[slots]\n"1-1.1" = "A1"\n{extra}'
    )
    return profile


def test_check_passes_and_describes_the_run(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    result = CliRunner().invoke(main, ["check", "--profile", str(profile), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["ok"] is True
    assert plan["product"] == {"id": 1234, "name": "acme-blinky", "version": 7}
    assert plan["target"].startswith("argon")
    assert [i["kind"] for i in plan["images"]] == ["user-part"]
    assert plan["slots"] == {"1-1.1": "A1"}

    text = CliRunner().invoke(main, ["check", "--profile", str(profile)])
    assert text.exit_code == 0
    assert "slot A1 = port 1-1.1" in text.output and "flash 1 image(s)" in text.output


def test_check_fails_on_a_tampered_bundle(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    bundle = next(tmp_path.glob("*.fwpkg"))
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["check", "--profile", str(profile)])
    assert result.exit_code == 1
    assert "FAIL" in result.output


def test_check_fails_on_an_untrusted_key_and_on_a_misspelt_key(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    other = make_sample_release(tmp_path / "other")
    text = profile.read_text().replace('"release.pub"', f'"{other.public_key}"')
    profile.write_text(text)
    assert CliRunner().invoke(main, ["check", "--profile", str(profile)]).exit_code == 1

    profile.write_text(text.replace("trusted_keys", "trusted_key"))
    result = CliRunner().invoke(main, ["check", "--profile", str(profile)])
    assert result.exit_code == 1
    assert "unknown key(s): trusted_key" in result.output


def test_check_reports_cloud_token_presence_without_printing_it(tmp_path: Path) -> None:
    profile = _profile(tmp_path, '[cloud]\nproduct = "1234"\ntoken_env = "BENCHFLASH_TEST_TOKEN"\n')
    secret = "a" * 40
    result = CliRunner().invoke(main, ["check", "--profile", str(profile)], env={"BENCHFLASH_TEST_TOKEN": secret})
    assert result.exit_code == 0, result.output
    assert "$BENCHFLASH_TEST_TOKEN set" in result.output
    assert secret not in result.output
