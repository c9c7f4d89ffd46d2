"""`station flash`: a module into DFU and serial boards, an ESP image, a bundle; refusals; exit codes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools import keys
from firmware_tools.bundle.partition_table import build_partition_table
from firmware_tools.particle import ModuleFunction, pack_module
from station.cli import main
from station.cli.flash_cmd import FlashInput, flash_candidate
from station.demo.sample_release import make_sample_release
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.devices.base import Family, FlashImage
from station.line.plan import Target
from tests.firmware_tools.test_bundle_support import ESP_TABLE
from tests.station.discovery.images import esp_app, particle_image

NO_TIMING = {"BENCHFLASH_SIM_TIMING": "0"}


@pytest.fixture
def bench() -> Iterator[SimulatedBench]:
    with SimulatedBench(timing=False, rng=random.Random(11)) as b:
        yield b


def _flash(*args: str, bench: SimulatedBench | None = None) -> tuple[int, str, str]:
    obj = None if bench is None else {"sources": [bench]}
    result = CliRunner().invoke(main, ["flash", *args], env=NO_TIMING, obj=obj)
    return result.exit_code, result.stdout, result.stderr


def _module_file(tmp_path: Path, platform: str, name: str = "app.bin") -> tuple[Path, FlashImage]:
    image = particle_image(platform, size=12 * 1024, seed=name)
    path = tmp_path / name
    path.write_bytes(image.data)
    return path, image


def _erased(bench: SimulatedBench, slot: str, image: FlashImage) -> bool:
    return bench.read_flash(slot, image.address, image.size) == b"\xff" * image.size


@pytest.mark.parametrize("kind", ["argon-dfu", "argon-serial"])
def test_a_particle_module_into_a_dfu_or_serial_board_reads_back_identical(
    tmp_path: Path, bench: SimulatedBench, kind: str
) -> None:
    path, image = _module_file(tmp_path, "argon")
    (slot,) = bench.attach_all(parse_simulate_spec(kind))
    code, out, err = _flash(str(path), "--json", bench=bench)
    assert code == 0, err
    result = json.loads(out)
    assert result["result"] == "pass" and result["verified"] is True
    assert result["device"]["port_path"] == slot
    assert result["device"]["device_id"] == bench.device_id(slot)
    assert result["images"] == [
        {"name": "app.bin", "kind": "user-part", "address": image.address, "size": image.size, "sha256": image.sha256}
    ]
    assert bench.holds(slot, image)
    # Progress goes to stderr, one JSON object per line under --json; stdout holds only the result.
    progress = [json.loads(line) for line in err.splitlines()]
    writes = [p for p in progress if p["phase"] == "write"]
    assert writes and all(p["event"] == "progress" and p["slot"] == slot for p in progress)
    assert writes[-1]["done"] == writes[-1]["total"] == image.size


def test_an_a_som_is_a_gen3_board_like_the_others(tmp_path: Path, bench: SimulatedBench) -> None:
    # Platform 22 (A-SoM): 2b04:d016 in DFU mode, c016 running, the Gen3 memory map.
    path, image = _module_file(tmp_path, "asom")
    (slot,) = bench.attach_all(parse_simulate_spec("asom-dfu"))
    code, out, err = _flash(str(path), "--json", bench=bench)
    assert code == 0, err
    device = json.loads(out)["device"]
    assert (device["platform"], device["platform_id"], device["family"]) == ("asom", 22, "particle-dfu")
    assert bench.holds(slot, image)
    listed = CliRunner().invoke(main, ["devices", "--json"], env=NO_TIMING, obj={"sources": [bench]})
    (row,) = json.loads(listed.stdout)["devices"]
    # Flashed and restarted: it now runs its firmware, on its normal-mode ID.
    assert (row["vid"], row["pid"], row["mode"], row["platform"]) == ("2b04", "c016", "normal", "asom")


def test_an_esp_image_at_the_default_and_at_a_given_address(tmp_path: Path, bench: SimulatedBench) -> None:
    app = esp_app("esp32", size=50_000)
    path = tmp_path / "app.bin"
    path.write_bytes(app)
    (slot,) = bench.attach_all(parse_simulate_spec("esp32"))
    code, out, err = _flash(str(path), bench=bench)
    assert code == 0, err
    assert out.startswith(f"PASS {slot} ESP32 {bench.device_id(slot)}")
    assert f"{slot}: write app.bin 100%" in err.splitlines()
    assert bench.read_flash(slot, 0x10000, len(app)) == app
    # A blank board has no table that makes 0x110000 an app partition; the board's own table decides.
    code, _, err = _flash(str(path), "--address", "0x110000", "--port", slot, bench=bench)
    assert code == 1 and "app-partition" in err and "nothing was written" in err
    assert bench.read_flash(slot, 0x110000, 16) == b"\xff" * 16
    table = tmp_path / "pt.bin"
    table.write_bytes(build_partition_table(ESP_TABLE))
    code, _, err = _flash(str(table), "--port", slot, bench=bench)
    assert code == 0, err
    code, out, err = _flash(str(path), "--address", "0x110000", "--port", slot, bench=bench)
    assert code == 0, err
    assert "partition 'ota_0', by the partition table read back from the board at 0x8000" in out
    assert bench.read_flash(slot, 0x110000, len(app)) == app


def test_a_bundle_is_verified_then_flashed(tmp_path: Path, bench: SimulatedBench) -> None:
    release = make_sample_release(tmp_path / "rel", target="esp32", app_size=30_000)
    (slot,) = bench.attach_all(parse_simulate_spec("esp32"))
    code, out, err = _flash(str(release.bundle), "--trusted", str(release.public_key), "--json", bench=bench)
    assert code == 0, err
    result = json.loads(out)
    assert result["kind"] == "bundle" and result["product"].startswith("product acme-blinky (4242) v3")
    (image,) = result["images"]
    data = bench.read_flash(slot, image["address"], image["size"])
    import hashlib

    assert hashlib.sha256(data).hexdigest() == image["sha256"]


def test_a_particle_bundle_into_a_dfu_board(tmp_path: Path, bench: SimulatedBench) -> None:
    release = make_sample_release(tmp_path / "rel", target="argon")
    (slot,) = bench.attach_all(parse_simulate_spec("argon-dfu"))
    code, out, err = _flash(str(release.bundle), "--trusted", str(release.public_key), "--json", bench=bench)
    assert code == 0, err
    (image,) = json.loads(out)["images"]
    assert image["kind"] == "user-part"
    assert bench.running(slot) == "application"


def test_a_bundle_needs_a_trusted_key_and_the_right_one(tmp_path: Path, bench: SimulatedBench) -> None:
    release = make_sample_release(tmp_path / "rel", target="esp32", app_size=20_000)
    stranger = keys.write_key_pair(keys.generate_key(), tmp_path / "stranger")
    (slot,) = bench.attach_all(parse_simulate_spec("esp32"))
    code, _, err = _flash(str(release.bundle), bench=bench)
    assert code == 2 and "--trusted" in err
    code, _, err = _flash(str(release.bundle), "--trusted", str(stranger.public_path), bench=bench)
    assert code == 1, err
    assert bench.read_flash(slot, 0x10000, 4096) == b"\xff" * 4096


def test_a_device_of_the_wrong_platform_is_refused_before_writing(tmp_path: Path, bench: SimulatedBench) -> None:
    path, image = _module_file(tmp_path, "photon")
    (slot,) = bench.attach_all(parse_simulate_spec("argon-dfu"))
    code, out, _ = _flash(str(path), "--json", bench=bench)
    assert code == 1
    result = json.loads(out)
    assert result["result"] == "fail" and result["error"]["reason"] == "wrong-target"
    assert "photon" in result["error"]["message"] and "argon" in result["error"]["message"]
    assert result["device"]["device_id"] == bench.device_id(slot)
    argon_app = particle_image("argon", size=image.size)
    assert _erased(bench, slot, argon_app)


def test_a_chip_of_another_kind_or_family_is_refused(tmp_path: Path, bench: SimulatedBench) -> None:
    s3_app = tmp_path / "s3.bin"
    s3_app.write_bytes(esp_app("esp32s3", size=20_000))
    module, _ = _module_file(tmp_path, "argon")
    esp32, _argon = bench.attach_all(parse_simulate_spec("esp32,argon-dfu"))
    code, _, err = _flash(str(s3_app), bench=bench)
    assert code == 1 and "ESP32" in err and "esp32s3" in err
    code, _, err = _flash(str(module), "--port", esp32, bench=bench)
    assert code == 1 and "cannot take a Particle module" in err
    assert bench.read_flash(esp32, 0x10000, 4096) == b"\xff" * 4096


def test_several_candidates_and_none_named_is_refused(tmp_path: Path, bench: SimulatedBench) -> None:
    path, image = _module_file(tmp_path, "argon")
    first, second, _esp = bench.attach_all(parse_simulate_spec("argon-dfu:2,esp32"))
    code, out, err = _flash(str(path), bench=bench)
    assert code == 2 and out == ""
    assert first in err and second in err and "--device" in err
    assert not bench.holds(first, image) and not bench.holds(second, image)

    code, _, err = _flash(str(path), "--device", bench.device_id(second).upper(), bench=bench)
    assert code == 0, err
    assert bench.holds(second, image) and not bench.holds(first, image)
    code, _, err = _flash(str(path), "--port", first, bench=bench)
    assert code == 0, err
    assert bench.holds(first, image)


def test_an_esp_is_found_by_its_mac(tmp_path: Path, bench: SimulatedBench) -> None:
    path = tmp_path / "app.bin"
    path.write_bytes(esp_app("esp32c3", size=10_000))
    _a, target = bench.attach_all(parse_simulate_spec("esp32c3:2"))
    mac = ":".join(bench.device_id(target)[i : i + 2] for i in range(0, 12, 2))
    code, out, err = _flash(str(path), "--device", mac, "--json", bench=bench)
    assert code == 0, err
    assert json.loads(out)["device"]["port_path"] == target


def test_nothing_attached_or_unknown_names_exit_1(tmp_path: Path, bench: SimulatedBench) -> None:
    path, _ = _module_file(tmp_path, "argon")
    code, _, err = _flash(str(path), bench=bench)
    assert code == 1 and "no device" in err
    bench.attach_all(parse_simulate_spec("argon-dfu"))
    assert _flash(str(path), "--device", "ff" * 12, bench=bench)[0] == 1
    assert _flash(str(path), "--port", "1-9.9", bench=bench)[0] == 1


def test_unusable_input_exits_2(tmp_path: Path, bench: SimulatedBench) -> None:
    path, image = _module_file(tmp_path, "argon")
    bench.attach_all(parse_simulate_spec("argon-dfu"))
    assert _flash(str(path), "--address", "0x10000", bench=bench)[0] == 2
    assert _flash(str(path), "--address", "banana", bench=bench)[0] == 2
    assert _flash(str(path), "--device", "x", "--port", "y", bench=bench)[0] == 2
    assert _flash(str(tmp_path / "missing.bin"), bench=bench)[0] == 2
    corrupt = tmp_path / "corrupt.bin"
    damaged = bytearray(image.data)
    damaged[100] ^= 0xFF
    corrupt.write_bytes(bytes(damaged))
    code, _, err = _flash(str(corrupt), bench=bench)
    assert code == 2 and "corrupt.bin" in err
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert _flash(str(empty), bench=bench)[0] == 2


def test_a_board_that_drops_off_mid_write_fails_with_the_reason(tmp_path: Path, bench: SimulatedBench) -> None:
    path, _ = _module_file(tmp_path, "argon")
    bench.attach_all(parse_simulate_spec("argon-dfu!disconnect@3"))
    code, out, _ = _flash(str(path), "--json", bench=bench)
    assert code == 1
    error = json.loads(out)["error"]
    assert error["reason"] == "disconnected" and "block" in error["message"]


def test_real_process_with_simulate(tmp_path: Path) -> None:
    good, _ = _module_file(tmp_path, "boron", "boron.bin")
    wrong, _ = _module_file(tmp_path, "photon", "photon.bin")
    env = dict(os.environ, **NO_TIMING)

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "station.cli", "flash", str(path), "--simulate", "boron-dfu", "--json"]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)

    done = run(good)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "pass"
    refused = run(wrong)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["reason"] == "wrong-target"


def test_firmware_the_bootloader_refuses_after_restart_is_a_failure(bench: SimulatedBench) -> None:
    # A system part that verifies byte for byte but whose CRC the bootloader rejects: it stays in DFU mode.
    module = bytearray(
        pack_module(bytes(range(256)) * 16, platform_id=12, function=ModuleFunction.SYSTEM_PART, start_address=0x30000)
    )
    module[600] ^= 0x01
    image = FlashImage("sys.bin", bytes(module), 0x30000, kind="system-part", module_function=4, module_index=1)
    target = Target(platform_id=12, platform_name="argon")
    flash_input = FlashInput("sys.bin", "particle-module", frozenset({Family.PARTICLE_DFU}), target, (image,))
    (slot,) = bench.attach_all(parse_simulate_spec("argon-dfu"))
    (candidate,) = bench.scan()
    outcome = flash_candidate(candidate, flash_input, lambda p: None)
    assert outcome.error is not None and outcome.error.reason.value == "verify-mismatch"
    assert outcome.running == "DFU mode"
    assert bench.holds(slot, image)


def test_refusals_before_writing_still_give_a_json_result(tmp_path: Path, bench: SimulatedBench) -> None:
    path, _ = _module_file(tmp_path, "argon")
    bench.attach_all(parse_simulate_spec("argon-dfu:2"))
    code, out, err = _flash(str(path), "--json", bench=bench)
    assert code == 2
    result = json.loads(out)
    assert result["result"] == "fail" and result["device"] is None
    assert result["error"]["reason"] == "bad-input" and "not guessing" in result["error"]["message"]
    assert "not guessing" in err

    release = make_sample_release(tmp_path / "rel", target="argon")
    stranger = keys.write_key_pair(keys.generate_key(), tmp_path / "stranger")
    code, out, _ = _flash(str(release.bundle), "--trusted", str(stranger.public_path), "--json", bench=bench)
    assert code == 1
    assert json.loads(out)["result"] == "fail"
    code, out, _ = _flash(str(path), "--device", "00" * 12, "--json", bench=bench)
    assert code == 1
    assert json.loads(out)["error"]["reason"] == "not-found"


def test_ctrl_c_during_the_write_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(particle_image("argon", size=128 * 1024, seed="big").data)
    env = dict(os.environ, BENCHFLASH_SIM_TIMING="1")  # the timed model: the write lasts long enough to interrupt
    command = [sys.executable, "-m", "station.cli", "flash", str(path), "--simulate", "argon-dfu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if ": write " in line:
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "PASS" not in out
    assert "interrupted" in err
