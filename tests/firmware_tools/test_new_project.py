"""fwtool new renders a product app; fwtool check-source catches a version that differs from the binary."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools.cli import main
from firmware_tools.project_source import find_product_macros

particle = pytest.importorskip("firmware_tools.particle", reason="Particle module support not built yet")


def _binary(tmp_path: Path, product_id: int, product_version: int) -> Path:
    data = particle.pack_module(b"\x00" * 1024, platform_id=12, product_id=product_id, product_version=product_version)
    path = tmp_path / "firmware.bin"
    path.write_bytes(data)
    return path


def test_new_renders_blinky_with_macros_near_the_top(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "new",
            str(tmp_path / "acme"),
            "--product-id",
            "1234",
            "--product-version",
            "7",
            "--platform",
            "argon",
        ],
    )
    assert result.exit_code == 0, result.output
    source = (tmp_path / "acme" / "src" / "blinky.cpp").read_text()
    head = source.splitlines()[:20]
    # Every platform `new` offers runs Device OS >= 4: PRODUCT_ID would be a compile error there.
    assert not any(line.startswith("PRODUCT_ID(") for line in source.splitlines())
    assert any("No PRODUCT_ID" in line and "argon" in line for line in head)
    assert "PRODUCT_VERSION(7);" in head
    assert "D0" in source and "300" in source
    assert (tmp_path / "acme" / "project.properties").read_text().strip() == "name=acme"
    readme = (tmp_path / "acme" / "README.md").read_text()
    assert "particle compile argon" in readme
    assert "{{" not in source + readme
    macros = find_product_macros(tmp_path / "acme")
    assert macros.product_id is None
    assert macros.product_version is not None and macros.product_version.value == 7


def test_new_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["new", str(tmp_path), "--product-id", "5", "--product-version", "1"])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_check_source_passes_on_match_and_fails_on_mismatch(tmp_path: Path) -> None:
    runner = CliRunner()
    project = tmp_path / "app"
    assert runner.invoke(main, ["new", str(project), "--product-id", "4321", "--product-version", "3"]).exit_code == 0

    good = _binary(tmp_path, 4321, 3)
    ok = runner.invoke(main, ["check-source", str(project), str(good)])
    assert ok.exit_code == 0, ok.output

    bad = _binary(tmp_path, 4321, 4)
    result = runner.invoke(main, ["check-source", str(project), str(bad)])
    assert result.exit_code == 1
    assert "PRODUCT_VERSION(3)" in result.output and "version 4" in result.output
    assert "blinky.cpp:" in result.output


def test_check_source_ignores_commented_macros(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.cpp").write_text("// PRODUCT_VERSION(99);\n/* PRODUCT_ID(1);\n */\nPRODUCT_VERSION(5);\n")
    macros = find_product_macros(tmp_path)
    assert macros.product_id is None
    assert macros.product_version is not None
    assert (macros.product_version.value, macros.product_version.line) == (5, 4)


def test_new_for_a_device_os_4_platform_has_no_product_id_and_checks_against_a_p2_binary(tmp_path: Path) -> None:
    # PRODUCT_ID is a compile error from Device OS 4.0 on, and a P2 runs nothing older.
    import json

    project = tmp_path / "p2app"
    result = CliRunner().invoke(
        main, ["new", str(project), "--product-id", "77", "--product-version", "2", "--platform", "p2", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["platform"], record["platform_id"], record["product_id_macro"]) == ("p2", 32, False)
    assert sorted(Path(f).name for f in record["files"]) == ["README.md", "blinky.cpp", "project.properties"]
    macros = find_product_macros(project)
    assert macros.product_id is None
    assert macros.product_version is not None and macros.product_version.value == 2
    # A Device OS 5 build for the P2 carries its platform id where the product id was.
    binary = tmp_path / "p2.bin"
    binary.write_bytes(particle.pack_module(b"\x00" * 1024, platform_id=32, product_id=32, product_version=2))
    assert CliRunner().invoke(main, ["check-source", str(project), str(binary)]).exit_code == 0
    binary.write_bytes(particle.pack_module(b"\x00" * 1024, platform_id=32, product_id=32, product_version=3))
    assert CliRunner().invoke(main, ["check-source", str(project), str(binary)]).exit_code == 1


def test_new_defaults_to_a_current_platform_and_offers_only_current_ones(tmp_path: Path) -> None:
    import json

    result = CliRunner().invoke(
        main, ["new", str(tmp_path / "a"), "--product-id", "5", "--product-version", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["platform"], record["product_id_macro"]) == ("p2", False)
    help_text = CliRunner().invoke(main, ["new", "--help"]).output
    for gone in ("photon", "gcc", "newhal", "raspi", "oak", "bluz", "xenon"):
        assert gone not in help_text.replace("Photon 2", ""), gone
    for current in ("argon", "boron", "bsom", "msom", "p2", "trackerm"):
        assert current in help_text
    for old in ("photon", "gcc", "newhal", "raspi", "oak", "bluz", "6"):
        bad = CliRunner().invoke(
            main, ["new", str(tmp_path / old), "--product-id", "5", "--product-version", "1", "--platform", old]
        )
        assert bad.exit_code == 2 and "--platform" in bad.output and "use one of: argon" in bad.output, old
        assert not (tmp_path / old).exists()
    bad = CliRunner().invoke(
        main, ["new", str(tmp_path / "b"), "--product-id", "5", "--product-version", "1", "--platform", "zz"]
    )
    assert bad.exit_code == 2 and "--platform" in bad.output


def test_new_for_an_esp32_is_refused_with_the_esp_path(tmp_path: Path) -> None:
    for chip in ("esp32", "ESP32-S3", "esp32c3"):
        result = CliRunner().invoke(
            main, ["new", str(tmp_path / "e"), "--product-id", "5", "--product-version", "1", "--platform", chip]
        )
        assert result.exit_code == 2 and "ESP-IDF" in result.output and "fwtool release" in result.output
        assert not (tmp_path / "e").exists()


def test_check_source_expects_no_product_id_for_a_device_os_4_binary(tmp_path: Path) -> None:
    project = tmp_path / "legacy"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.cpp").write_text("PRODUCT_ID(4321);\nPRODUCT_VERSION(3);\n")
    deps = [particle.Dependency(4, 1, 6200)]
    os6 = tmp_path / "os6.bin"
    os6.write_bytes(
        particle.pack_module(b"\x00" * 1024, platform_id=13, product_id=13, product_version=3, dependencies=deps)
    )
    result = CliRunner().invoke(main, ["check-source", str(project), str(os6)])
    assert result.exit_code == 1
    assert "PRODUCT_ID(4321)" in result.output and "compile error" in result.output and "app.cpp:1" in result.output
    # The same source against a Device OS 3 build of that product still matches.
    os3 = tmp_path / "os3.bin"
    os3.write_bytes(
        particle.pack_module(
            b"\x00" * 1024,
            platform_id=13,
            product_id=4321,
            product_version=3,
            dependencies=[particle.Dependency(4, 1, 3300)],
        )
    )
    assert CliRunner().invoke(main, ["check-source", str(project), str(os3)]).exit_code == 0
