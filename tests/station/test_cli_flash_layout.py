"""`station flash` and `fwtool verify` judge an ESP layout as the chip boots it: the issue's four commands.

A bundle that `fwtool release` would refuse is made here by signing a manifest by hand (as a tool other
than ours could); verify names the broken rules, and the station refuses it before writing a byte.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools import keys
from firmware_tools.bundle import ReleaseInput, build_release
from firmware_tools.bundle.manifest import decode_manifest, encode_manifest
from firmware_tools.bundle.partition_table import Partition, build_partition_table
from firmware_tools.bundle.release import pack_bundle
from firmware_tools.cli import main as fwtool
from firmware_tools.esp import build_app_image
from firmware_tools.esp.builder import build_bootloader_image
from station.cli import main as station
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from tests.conftest import fixture_dir

NO_TIMING = {"BENCHFLASH_SIM_TIMING": "0"}
TABLE = [
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
    Partition("rfdata", 1, 1, 0x110000, 0x40000, 0),
    Partition("wifidata", 1, 2, 0x150000, 0x40000, 0),
]


@pytest.fixture
def bench() -> Iterator[SimulatedBench]:
    with SimulatedBench(timing=False, rng=random.Random(13)) as b:
        yield b


def _flash(*args: str, bench: SimulatedBench) -> tuple[int, str, str]:
    result = CliRunner().invoke(station, ["flash", *args], env=NO_TIMING, obj={"sources": [bench]})
    return result.exit_code, result.stdout, result.stderr


def _own() -> dict[str, bytes]:
    return {
        "bootloader.bin": build_bootloader_image(chip="esp32", flash_size="2MB"),
        "partitions.bin": build_partition_table(TABLE, with_md5=False)[:96],
        "app.bin": build_app_image(chip="esp32", payload_size=4096),
    }


def _fixtures() -> dict[str, bytes]:
    folder = fixture_dir("esp")
    return {
        "bootloader.bin": (folder / "bootloader_esp32.bin").read_bytes(),
        "partitions.bin": (folder / "partitions_singleapp.bin").read_bytes(),
        "app.bin": (folder / "helloworld-esp32.bin").read_bytes(),
    }


def _bundles(files: dict[str, bytes], tmp_path: Path) -> tuple[Path, Path, Path]:
    """(good bundle, the issue's bad layout signed by hand, public key)."""
    key = keys.generate_key()
    at = {"bootloader.bin": 0x1000, "partitions.bin": 0x8000, "app.bin": 0x10000}
    release = build_release(
        [ReleaseInput(n, d, at[n]) for n, d in files.items()],
        product_id=1234,
        product_version=3,
        key=key,
        product_name="acme",
    )
    good = tmp_path / "good.fwpkg"
    good.write_bytes(release.bundle)
    m = decode_manifest(release.manifest_bytes)
    moved = {"bootloader.bin": 0x0, "partitions.bin": 0x8000, "app.bin": 0x20000}
    images = tuple(dataclasses.replace(e, address=moved[e.name]) for e in m.images)
    manifest = encode_manifest(dataclasses.replace(m, images=images))
    bad = tmp_path / "bad.fwpkg"
    bad.write_bytes(pack_bundle(manifest, key.sign(manifest), [(e.name, files[e.name]) for e in images], m.created_at))
    pub = tmp_path / "release.pub"
    pub.write_bytes(key.public.pem())
    return good, bad, pub


@pytest.mark.parametrize("source", [_own, _fixtures], ids=["own-encoders", "fixtures"])
def test_the_issues_commands_fail_with_named_checks_and_the_right_layout_flashes(
    tmp_path: Path, bench: SimulatedBench, source: object
) -> None:
    files = source()  # type: ignore[operator]
    good, bad, pub = _bundles(files, tmp_path)

    verified = CliRunner().invoke(fwtool, ["verify", str(bad), "--trusted", str(pub), "--json"])
    assert verified.exit_code == 1
    failed = {c["name"] for c in json.loads(verified.stdout)["checks"] if c["ok"] is False}
    assert {"bootloader.bin: bootloader-offset", "app.bin: app-partition"} <= failed

    (slot,) = bench.attach_all(parse_simulate_spec("esp32"))
    code, _, err = _flash(str(bad), "--trusted", str(pub), bench=bench)
    assert code == 1 and "bootloader-offset" in err
    assert bench.read_flash(slot, 0, 0x30000) == b"\xff" * 0x30000  # nothing written

    app = tmp_path / "app.bin"
    app.write_bytes(files["app.bin"])
    code, _, err = _flash(str(app), "--address", "0x1000", bench=bench)
    assert code == 1 and "app-partition" in err and "nothing was written" in err
    assert bench.read_flash(slot, 0, 0x30000) == b"\xff" * 0x30000

    assert CliRunner().invoke(fwtool, ["verify", str(good), "--trusted", str(pub)]).exit_code == 0
    code, _, err = _flash(str(good), "--trusted", str(pub), bench=bench)
    assert code == 0, err
    for name, address in (("bootloader.bin", 0x1000), ("partitions.bin", 0x8000), ("app.bin", 0x10000)):
        assert bench.read_flash(slot, address, len(files[name])) == files[name]


def test_a_c3_bootloader_is_refused_at_0x1000_and_taken_at_0x0(tmp_path: Path, bench: SimulatedBench) -> None:
    path = tmp_path / "boot.bin"
    path.write_bytes(build_bootloader_image(chip="esp32c3"))
    (slot,) = bench.attach_all(parse_simulate_spec("esp32c3"))
    code, _, err = _flash(str(path), "--address", "0x1000", bench=bench)
    assert code == 1 and "bootloader-offset" in err and "put it at 0x0" in err
    code, _, err = _flash(str(path), bench=bench)
    assert code == 0, err
    assert bench.read_flash(slot, 0, path.stat().st_size) == path.read_bytes()


def test_raw_data_goes_to_a_data_partition_of_a_known_table_only(tmp_path: Path, bench: SimulatedBench) -> None:
    data = tmp_path / "fs.bin"
    data.write_bytes(bytes(range(256)) * 32)
    table = tmp_path / "pt.bin"
    table.write_bytes(build_partition_table(TABLE))
    (slot,) = bench.attach_all(parse_simulate_spec("esp32"))
    code, _, err = _flash(str(data), "--raw", "--address", "0x150000", bench=bench)
    assert code == 1 and "data-partition" in err and "without a partition table" in err
    code, _, err = _flash(str(data), "--raw", "--address", "0x160000", "--partition-table", str(table), bench=bench)
    assert code == 1 and "no data partition starts there" in err
    code, out, err = _flash(
        str(data), "--raw", "--address", "0x150000", "--partition-table", str(table), "--json", bench=bench
    )
    assert code == 0, err
    assert "partition 'wifidata', by the partition table --partition-table" in json.loads(out)["layout"]
    assert bench.read_flash(slot, 0x150000, 8192) == data.read_bytes()
    # With the table on the board, the board's table decides (read back from 0x8000).
    assert _flash(str(table), bench=bench)[0] == 0
    code, out, err = _flash(str(data), "--raw", "--address", "0x110000", bench=bench)
    assert code == 0, err
    assert "partition 'rfdata', by the partition table read back from the board at 0x8000" in out


def test_station_check_refuses_the_issues_bundle(tmp_path: Path) -> None:
    good, bad, pub = _bundles(_own(), tmp_path)
    for bundle, code in ((good, 0), (bad, 1)):
        profile = tmp_path / f"{bundle.stem}.toml"
        profile.write_text(f'station_id = "s1"\nbundle = "{bundle.name}"\ntrusted_keys = ["{pub.name}"]\n')
        result = CliRunner().invoke(station, ["check", "--profile", str(profile)])
        assert result.exit_code == code, result.output
        if code:
            assert "bootloader-offset" in result.stderr and "app-partition" in result.stderr
