"""``station console ...`` as a user runs it, against the simulated console on loopback: every refusal
with its exit code and one-line message, the token never shown, 401/403 naming the scope, 429 backed
off, JSON output, and one real process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_tools import keys
from station.cli import main
from station.demo.sample_release import SampleRelease, make_sample_release
from station.sim.console import RateLimit, SimConsole, SimToken
from station.sim.console_http import ConsoleServer
from station.sim.console_rollout import report_running_firmware
from station.sim.console_state import SimDevice, SimGroup
from tests.station.test_cloud_fixtures import FakeClock

TOKEN = "0123456789abcdef0123456789abcdef01234567"
PRODUCT = "4242"
DEV_A, DEV_B = f"{0xA1:024x}", f"{0xB2:024x}"


@dataclass
class Setup:
    console: SimConsole
    url: str
    release: SampleRelease
    folder: Path
    clock: FakeClock

    def run(self, *args: str, env: dict[str, str] | None = None, token: str | None = TOKEN) -> tuple[int, str, str]:
        environ = {"PARTICLE_ACCESS_TOKEN": token} if token is not None else {}
        environ.update(env or {})
        cli_args = ["console", *args]
        if "--base-url" not in args:
            cli_args += ["--base-url", self.url]
        if "--product" not in args and "--profile" not in args:
            cli_args += ["--product", PRODUCT]
        result = CliRunner().invoke(
            main, cli_args, env=environ, obj={"sleep": self.clock.sleep}, catch_exceptions=False
        )
        return result.exit_code, result.stdout, result.stderr

    def upload(self, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return self.run("upload", str(self.release.bundle), "--trusted", str(self.release.public_key), *extra, env=env)


@pytest.fixture(name="setup")
def setup_fixture(tmp_path: Path) -> Iterator[Setup]:
    clock = FakeClock()
    console = SimConsole.with_product(4242, TOKEN, platform_id=12, clock=clock)
    with console.lock:
        for device_id in (DEV_A, DEV_B):
            console.state.devices[4242].add(SimDevice(id=device_id, product_id=4242, platform_id=12))
    release = make_sample_release(tmp_path / "v3", product_id=4242, product_version=3, app_size=4096)
    server = ConsoleServer(console).start()
    try:
        yield Setup(console, server.url, release, tmp_path, clock)
    finally:
        server.stop()


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("station: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_upload_reads_the_version_from_the_binary(setup: Setup) -> None:
    code, out, err = setup.upload()
    assert code == 0, err
    assert "as firmware version 3 of product 4242 ('acme-blinky v3')" in out
    assert "next: lock a test device to it: station console lock DEVICE_ID 3 --product 4242" in out
    assert list(setup.console.state.firmware[4242]) == [3]
    # The same bytes again: said so, exit 0, nothing sent.
    code, out, err = setup.upload()
    assert code == 0, err
    assert "already has firmware version 3 with these exact bytes: nothing to do" in out
    code, out, _ = setup.run("firmware", "--json")
    assert code == 0
    listed = json.loads(out)["firmware"]
    assert [(f["version"], f["released"], f["device_count"]) for f in listed] == [(3, False, 0)]
    assert TOKEN not in out + err


def test_upload_refuses_the_same_version_with_other_bytes(setup: Setup) -> None:
    assert setup.upload()[0] == 0
    other = make_sample_release(setup.folder / "other", product_id=4242, product_version=3, app_size=6000)
    code, out, err = setup.run("upload", str(other.bundle), "--trusted", str(other.public_key))
    assert code == 1, out
    line = one_line_error(err)
    assert "product 4242 already has firmware version 3 with different bytes" in line
    assert "build the new firmware with a higher PRODUCT_VERSION" in line


def test_upload_refuses_a_binary_of_another_product(setup: Setup) -> None:
    other = make_sample_release(setup.folder / "p4243", product_id=4243, product_version=3)
    code, _, err = setup.run("upload", str(other.bundle), "--trusted", str(other.public_key))
    assert code == 1
    assert "was compiled with PRODUCT_ID(4243), not for product 4242; refusing to upload it there" in one_line_error(
        err
    )
    assert setup.console.state.firmware[4242] == {}


def test_upload_refuses_a_bundle_that_does_not_verify(setup: Setup) -> None:
    stranger = keys.write_key_pair(keys.generate_key(), setup.folder / "stranger", overwrite=True)
    code, _, err = setup.run("upload", str(setup.release.bundle), "--trusted", str(stranger.public_path))
    assert code == 1
    assert "bundle failed verification" in one_line_error(err)
    code, _, err = setup.run("upload", str(setup.release.bundle))
    assert code == 2
    assert "no trusted key: pass --trusted" in one_line_error(err)
    assert setup.console.state.firmware[4242] == {}


def test_lock_unlock_and_release_rules(setup: Setup) -> None:
    code, _, err = setup.run("lock", DEV_A, "3")
    assert code == 1
    assert "product 4242 has no firmware version 3 (it has: none)" in one_line_error(err)
    assert setup.upload()[0] == 0
    code, _, err = setup.run("lock", "0" * 24, "3")
    assert code == 1 and f"device {'0' * 24} is not in product 4242" in one_line_error(err)

    code, _, err = setup.run("release", "3")
    assert code == 1
    line = one_line_error(err)
    assert "refusing to release version 3 of product 4242: no device runs it yet, and no device is locked to it" in line
    assert f"station console lock DEVICE_ID 3 --product {PRODUCT}" in line

    code, out, err = setup.run("lock", DEV_A, "3", "--on-reset", "--json")
    assert code == 0, err
    assert json.loads(out)["locked_version"] == 3 and json.loads(out)["flash"] is False
    code, out, _ = setup.run("lock", DEV_B, "3")
    assert code == 0 and "it is offline: it gets it when it next connects" in out
    report_running_firmware(setup.console, PRODUCT, DEV_B, b"")  # it comes online, no product firmware yet
    code, out, _ = setup.run("lock", DEV_B, "3")
    assert code == 0 and "the cloud flashes it now" in out
    code, _, err = setup.run("unlock", DEV_B)
    assert code == 0, err
    code, _, err = setup.run("release", "3")
    assert code == 1
    line = one_line_error(err)
    assert f"no device runs it yet; locked to it but not running it yet: {DEV_A} (runs nothing yet, offline)" in line
    assert f"station console lock {DEV_A} 3 --product {PRODUCT} --now" in line

    report_running_firmware(setup.console, PRODUCT, DEV_A, setup.console.state.firmware[4242][3].data)
    code, out, err = setup.run("release", "3", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["running"] == [DEV_A] and answer["product_default"] is True


def test_release_to_a_group_and_devices_listing(setup: Setup) -> None:
    assert setup.upload()[0] == 0
    report_running_firmware(setup.console, PRODUCT, DEV_A, setup.console.state.firmware[4242][3].data)
    code, _, err = setup.run("release", "3", "--group", "Pilot")
    assert code == 1 and "product 4242 has no group(s) pilot" in one_line_error(err)
    code, _, err = setup.run("release", "3", "--group", "bad group")
    assert code == 2 and "--group: group name 'bad group'" in one_line_error(err)
    with setup.console.lock:
        setup.console.state.groups[4242]["pilot"] = SimGroup("pilot")
        setup.console.state.devices[4242].update(DEV_A, groups=("pilot",))
    code, out, err = setup.run("release", "3", "--group", "pilot")
    assert code == 0, err
    assert "released firmware version 3 of product 4242 to group(s) pilot" in out
    code, out, _ = setup.run("devices", "--group", "pilot", "--json")
    devices = json.loads(out)["devices"]
    assert [(d["id"], d["firmware_version"], d["online"], d["groups"]) for d in devices] == [
        (DEV_A, 3, True, ["pilot"])
    ]
    code, out, _ = setup.run("devices")
    assert code == 0 and "product 4242: 2 device(s)" in out and DEV_B in out
    code, out, _ = setup.run("firmware")
    assert "groups pilot" in out


def test_bad_token_and_missing_scope_name_the_scope(setup: Setup) -> None:
    wrong = "ffffffffffffffffffffffffffffffffffffffff"
    code, out, err = setup.run("firmware", token=wrong)
    assert code == 1
    line = one_line_error(err)
    assert "HTTP 401" in line and "invalid or expired" in line and "firmware:list scope" in line
    assert wrong not in out + err and TOKEN not in out + err

    limited = "1111111111111111111111111111111111111111"
    setup.console.add_token(SimToken(limited, scopes=frozenset({"products:get", "firmware:list"})))
    code, out, err = setup.upload("--token-env", "LIMITED", env={"LIMITED": limited})
    assert code == 1
    line = one_line_error(err)
    assert "HTTP 403" in line and "it needs the firmware:create scope on this product" in line
    assert limited not in out + err

    code, _, err = setup.run("firmware", token=None)
    assert code == 2 and "environment variable PARTICLE_ACCESS_TOKEN is not set" in one_line_error(err)


def test_token_file_must_be_private(setup: Setup) -> None:
    path = setup.folder / "token"
    path.write_text(TOKEN + "\n", encoding="ascii")
    path.chmod(0o644)
    code, _, err = setup.run("firmware", "--token-file", str(path), token=None)
    assert code == 2 and "readable by others" in one_line_error(err)
    path.chmod(0o600)
    code, out, err = setup.run("firmware", "--token-file", str(path), token=None)
    assert code == 0, err
    assert TOKEN not in out + err


def test_429_backs_off_then_succeeds_or_gives_up(setup: Setup) -> None:
    # One request per 10 s of the console's clock; the CLI's sleep advances that clock.
    setup.console.rate_limit = RateLimit(limit=1, window=10.0)
    assert setup.run("firmware")[0] == 0
    code, out, err = setup.run("firmware")
    assert code == 0, err
    assert "HTTP 429 rate_limited" in err and "retrying in" in err
    assert setup.clock.sleeps and setup.clock.sleeps[0] >= 10.0  # the Retry-After was honoured
    assert "product 4242: 0 firmware version(s)" in out

    setup.console.rate_limit = RateLimit(limit=1, window=1000.0)
    setup.clock.now += 2000
    assert setup.run("firmware")[0] == 0
    code, _, err = setup.run("firmware", "--max-failures", "1")
    assert code == 1
    assert "HTTP 429" in one_line_error(err)


def test_bad_input_exits_2(setup: Setup) -> None:
    code, _, err = setup.run("firmware", "--base-url", "http://example.com")
    assert code == 2 and "plain http is allowed only on loopback" in one_line_error(err)
    result = CliRunner().invoke(main, ["console", "firmware"], env={"PARTICLE_ACCESS_TOKEN": TOKEN})
    assert result.exit_code == 2 and "no product: pass --product" in result.stderr
    code, _, err = setup.run("lock", DEV_A, "0")
    assert code == 2
    # A device ID is 24 hex digits: anything else is a typo, said before any request is sent.
    before = setup.console.stats().requests
    for command in (("lock", "../../x", "3"), ("unlock", "e00fce68-not-an-id"), ("lock", DEV_A[:-1], "3")):
        code, _, err = setup.run(*command)
        assert code == 2 and "not a device ID" in one_line_error(err), err
    assert setup.console.stats().requests == before
    # Upper case, as some tools print IDs, is the same device.
    assert setup.upload()[0] == 0
    code, out, err = setup.run("lock", DEV_A.upper(), "3", "--json")
    assert code == 0, err
    device = setup.console.product_device(PRODUCT, DEV_A)
    assert json.loads(out)["id"] == DEV_A and device is not None and device.desired_firmware_version == 3


def test_profile_supplies_product_and_trusted_keys(setup: Setup) -> None:
    profile = setup.folder / "line.toml"
    profile.write_text(
        f'station_id = "bench-1"\nbundle = "{setup.release.bundle}"\ntrusted_keys = ["{setup.release.public_key}"]\n'
        f'[cloud]\nproduct = 4242\nbase_url = "{setup.url}"\ntoken_env = "LINE_TOKEN"\n',
        encoding="utf-8",
    )
    code, out, err = setup.run(
        "upload", str(setup.release.bundle), "--profile", str(profile), env={"LINE_TOKEN": TOKEN}
    )
    assert code == 0, err
    assert "firmware version 3 of product 4242" in out


def test_console_commands_in_a_real_process(setup: Setup) -> None:
    env = {**os.environ, "PARTICLE_ACCESS_TOKEN": TOKEN}
    args = [sys.executable, "-m", "station.cli", "console"]
    where = ["--product", PRODUCT, "--base-url", setup.url]
    upload = subprocess.run(
        [*args, "upload", str(setup.release.bundle), "--trusted", str(setup.release.public_key), *where, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upload.returncode == 0, upload.stderr
    assert json.loads(upload.stdout)["version"] == 3
    release = subprocess.run(
        [*args, "release", "3", "--product", PRODUCT, "--base-url", setup.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert release.returncode == 1
    assert release.stderr.count("\n") == 1 and "no device runs it yet" in release.stderr
    assert TOKEN not in upload.stdout + upload.stderr + release.stdout + release.stderr


def test_the_token_is_never_logged(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    setup.console.rate_limit = RateLimit(limit=1, window=10.0)
    code, _, err = setup.upload()
    assert code == 0, err  # several requests, some answered 429 and retried
    assert setup.run("release", "3")[0] == 1
    assert setup.run("firmware", token="f" * 40)[0] == 1
    assert caplog.records and "retrying in" in caplog.text
    assert TOKEN not in caplog.text and "f" * 40 not in caplog.text


def test_json_refusals_are_objects_too(setup: Setup) -> None:
    """A script that asked for --json gets an object on stdout for a refusal, not an empty stream."""
    code, out, err = setup.run("release", "3", "--json")
    assert code == 1
    answer = json.loads(out)
    assert answer["ok"] is False and answer["error"]["exit_code"] == 1
    assert answer["error"]["message"].startswith("product 4242 has no firmware version 3")
    assert answer["error"]["hint"].startswith("upload it first")
    assert one_line_error(err).endswith(answer["error"]["message"])
    code, out, _ = setup.run("firmware", "--json", token="f" * 40)
    assert code == 1 and json.loads(out)["error"]["reason"] == "cloud" and "f" * 40 not in out
    code, out, _ = setup.run("upload", str(setup.release.bundle), "--trusted", str(setup.folder / "none.pub"), "--json")
    assert code == 2 and json.loads(out)["error"]["reason"] == "bad-input"
