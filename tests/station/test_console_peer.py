"""Particle's own JavaScript client (npm particle-api-js) through the rollout endpoints of the
simulated console: the errors a user of Particle's tools sees, in that client's words. Skips when
node or the package is missing (see test_sim_console_peer.py for where it is looked for)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.demo.sample_release import particle_app
from station.sim.console import SimConsole
from station.sim.console_http import ConsoleServer
from station.sim.console_rollout import MISMATCH, NOT_RUNNING
from station.sim.console_state import SimDevice
from tests.station.test_sim_console_peer import _particle_api_js

TOKEN = "9" * 40
DEVICE = f"{0xD1:024x}"

SCRIPT = r"""
const Particle = require(process.env.PARTICLE_API_JS);
const particle = new Particle({ baseUrl: process.env.BASE_URL });
const auth = process.env.TOKEN;
const product = '4242';
async function attempt(fn) {
  try { return { ok: (await fn()).body }; } catch (err) { return { status: err.statusCode, message: err.message }; }
}
async function main() {
  const out = {};
  out.mismatch = await attempt(() => particle.uploadProductFirmware(
    { product, file: process.env.V3, version: 4, title: 'v4', auth }));
  out.upload = await attempt(() => particle.uploadProductFirmware(
    { product, file: process.env.V3, version: 3, title: 'v3', description: 'blinky', auth }));
  out.early = await attempt(() => particle.releaseProductFirmware({ product, version: 3, auth }));
  out.lock = await attempt(() => particle.lockDeviceProductFirmware(
    { product, deviceId: process.env.DEVICE, desiredFirmwareVersion: 3, flash: true, auth }));
  out.list = await attempt(() => particle.listProductFirmware({ product, auth }));
  console.log(JSON.stringify(out));
}
main().catch((err) => { console.error(err.message); process.exit(1); });
"""


@pytest.fixture
def served() -> Iterator[tuple[SimConsole, str]]:
    sim = SimConsole.with_product(4242, TOKEN, platform_id=12)
    sim.state.devices[4242].add(SimDevice(DEVICE, 4242, platform_id=12))
    with ConsoleServer(sim) as server:
        yield sim, server.url


def test_particle_api_js_sees_the_console_refusals(served: tuple[SimConsole, str], tmp_path: Path) -> None:
    package = _particle_api_js()
    sim, url = served
    binary = tmp_path / "v3.bin"
    binary.write_bytes(particle_app("argon", size=2048, product_id=4242, product_version=3))
    script = tmp_path / "rollout.js"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {
        **os.environ,
        "PARTICLE_API_JS": str(package),
        "BASE_URL": url,
        "TOKEN": TOKEN,
        "V3": str(binary),
        "DEVICE": DEVICE,
    }
    done = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # "HTTP error <status> from <url> - <error_description>": what a user of Particle's tools reads.
    assert out["mismatch"]["status"] == 400
    assert out["mismatch"]["message"].endswith("- " + MISMATCH.format(given=4, compiled=3))
    assert out["upload"]["ok"]["version"] == 3 and out["upload"]["ok"]["title"] == "v3"
    assert out["early"]["status"] == 400
    assert out["early"]["message"].endswith("- " + NOT_RUNNING.format(version=3))
    assert out["lock"]["ok"]["desired_firmware_version"] == 3
    assert [f["version"] for f in out["list"]["ok"]] == [3]
    assert sim.state.firmware[4242][3].data == binary.read_bytes()
    assert sim.state.devices[4242].by_id[DEVICE].flash_requested
