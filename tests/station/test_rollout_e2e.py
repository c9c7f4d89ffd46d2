"""The console rollout end to end: a signed bundle -> the real line flashes a simulated test board and
the sync imports it into its batch group -> ``station console upload`` -> ``lock`` -> the board reports
what it runs -> ``release``; all against the simulated console over loopback HTTP."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import main
from station.cloud.token import load_token
from station.demo.sample_release import make_sample_release
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.line.events import Event
from station.line_setup import prepare_line
from station.session import LineSession
from station.sim.console import SimConsole
from station.sim.console_http import ConsoleServer
from station.sim.console_rollout import report_running_firmware
from station.store import OutboxState, Registry

TOKEN = "5e1f" * 10
PRODUCT = "4242"
GROUP = "20261126_bench-7"


def console(*args: str, url: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        ["console", *args, "--product", PRODUCT, "--base-url", url],
        env={"PARTICLE_ACCESS_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    return result.exit_code, result.stdout, result.stderr


def wait_for(condition: object, limit: float = 60.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_bundle_to_release_through_a_test_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = make_sample_release(tmp_path, target="argon", product_id=4242, product_version=3)
    sim = SimConsole.with_product(4242, TOKEN, platform_id=12)
    server = ConsoleServer(sim).start()
    monkeypatch.setenv("PARTICLE_ACCESS_TOKEN", TOKEN)
    profile = tmp_path / "line.toml"
    profile.write_text(
        f'station_id = "Bench 7"\nbundle = "{release.bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        f'job_timeout = 60\n\n[cloud]\nproduct = {PRODUCT}\nbase_url = "{server.url}"\n',
        encoding="utf-8",
    )
    registry = Registry(tmp_path / "station.db")
    events: list[Event] = []
    try:
        with SimulatedBench(timing=False, rng=random.Random(8)) as bench:
            # 1. The line flashes a test board and the sync imports it into the run's batch group.
            line = prepare_line(profile, today=lambda: date(2026, 11, 26))
            assert line.plan.sync_group == GROUP
            session = LineSession(line, registry, [bench], events.append, poll_interval=0.05)
            assert line.cloud is not None
            session.start_sync(load_token(line.cloud))
            stop = threading.Event()
            runner = threading.Thread(target=session.run, args=(stop,), daemon=True)
            runner.start()
            slot = bench.attach(parse_simulate_spec("argon-dfu")[0])
            device_id = bench.device_id(slot)
            try:
                wait_for(lambda: registry.outbox.counts(PRODUCT)[OutboxState.SYNCED] == 1)
            finally:
                stop.set()
                runner.join(timeout=60)
            entry = registry.outbox.entries(product=PRODUCT)[0]
            assert (entry.device_id, entry.group) == (device_id, GROUP)
            record = sim.product_device(PRODUCT, device_id)
            assert record is not None and record.groups == (GROUP,) and record.firmware_version is None

            # 2. Upload: the version comes from the binary.
            code, out, err = console(
                "upload", str(release.bundle), "--trusted", str(release.public_key), "--json", url=server.url
            )
            assert code == 0, err
            assert json.loads(out)["version"] == 3 and json.loads(out)["uploaded"] is True

            # 3. Lock the test device; releasing before it runs the version is refused, naming it.
            code, _, err = console("lock", device_id, "3", "--now", url=server.url)
            assert code == 0, err
            code, _, err = console("release", "3", url=server.url)
            assert code == 1
            assert f"locked to it but not running it yet: {device_id} (runs nothing yet, offline)" in err

            # 4. The board reports what its flash holds, as a device does at its handshake.
            image = line.plan.images[0]
            assert bench.holds(slot, image)
            running = bench.read_flash(slot, image.address, image.size)
            assert report_running_firmware(sim, PRODUCT, device_id, running) == 3

            # 5. Release: allowed now, and the batch group shows the device running it.
            code, out, err = console("release", "3", url=server.url)
            assert code == 0, err
            assert "released firmware version 3 of product 4242 to the whole product (default)" in out
            code, out, _ = console("devices", "--group", GROUP, "--json", url=server.url)
            [listed] = json.loads(out)["devices"]
            assert (listed["id"], listed["firmware_version"], listed["locked_version"], listed["online"]) == (
                device_id,
                3,
                3,
                True,
            )
            code, out, _ = console("firmware", "--json", url=server.url)
            [fw] = json.loads(out)["firmware"]
            assert (fw["version"], fw["product_default"], fw["device_count"]) == (3, True, 1)
    finally:
        registry.close()
        server.stop()
