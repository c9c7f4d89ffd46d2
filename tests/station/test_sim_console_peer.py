"""A real peer: Particle's own JavaScript client (npm particle-api-js) against the simulated console.

The test installs nothing. It looks for particle-api-js under ``.cache/npm/node_modules`` (where
the Makefile's npm target puts it) or ``BENCHFLASH_NODE_MODULES``, and skips saying why when node or
the package is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.sim.console import SimConsole
from station.sim.console_http import ConsoleServer
from tests.conftest import ROOT
from tests.station.test_cloud_fixtures import PRODUCT, SLUG, TOKEN, device_ids

SCRIPT = r"""
const Particle = require(process.env.PARTICLE_API_JS);
const particle = new Particle({ baseUrl: process.env.BASE_URL });
const auth = process.env.TOKEN;
async function main() {
  const out = {};
  const added = await particle.addDeviceToProduct({ product: process.env.PRODUCT, file: process.env.IDS, auth });
  out.import = added.body;
  const one = await particle.addDeviceToProduct({ product: process.env.PRODUCT, deviceId: process.env.ONE, auth });
  out.single = one.body;
  const listed = [];
  for (let page = 1; ; page++) {
    const res = await particle.listDevices({ product: process.env.PRODUCT, page, perPage: 7, auth });
    listed.push(...res.body.devices.map((d) => d.id));
    if (page >= res.body.meta.total_pages) break;
  }
  out.listed = listed;
  try {
    await particle.listDevices({ product: process.env.PRODUCT, auth: 'not-the-token' });
  } catch (err) {
    out.error = { status: err.statusCode, message: err.message };
  }
  console.log(JSON.stringify(out));
}
main().catch((err) => { console.error(err.message); process.exit(1); });
"""


def _particle_api_js() -> Path:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    roots = [Path(p) for p in os.environ.get("BENCHFLASH_NODE_MODULES", "").split(os.pathsep) if p]
    roots.append(ROOT / ".cache" / "npm" / "node_modules")
    for root in roots:
        package = root / "particle-api-js"
        if (package / "package.json").is_file():
            return package
    pytest.skip("particle-api-js is not installed (run `make npm-peers`, which needs npm and the network)")


@pytest.fixture
def console() -> Iterator[tuple[SimConsole, str]]:
    sim = SimConsole.with_product(int(PRODUCT), TOKEN, slug=SLUG, platform_id=32)
    with ConsoleServer(sim) as server:
        yield sim, server.url


def test_particle_api_js_imports_a_file_of_ids(console: tuple[SimConsole, str], tmp_path: Path) -> None:
    package = _particle_api_js()
    sim, url = console
    ids = device_ids(20)
    outsider = f"{4096:024x}"
    sim.state.claim_elsewhere([outsider])
    id_file = tmp_path / "devices.txt"
    id_file.write_text("\r\n".join([*ids, outsider, "bad-id", ""]))
    script = tmp_path / "peer.js"
    script.write_text(SCRIPT)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PARTICLE_API_JS": str(package),
        "BASE_URL": url,
        "TOKEN": TOKEN,
        "PRODUCT": SLUG,
        "IDS": str(id_file),
        "ONE": ids[0],
    }
    done = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["import"] == {
        "updated": 20,
        "updatedDeviceIds": ids,
        "existingDeviceIds": [],
        "nonmemberDeviceIds": [outsider],
        "invalidDeviceIds": ["bad-id"],
        "protectedDeviceIds": [],
    }
    assert out["single"]["existingDeviceIds"] == [ids[0]]
    assert out["listed"] == ids
    # The client builds its message from the error body: "HTTP error 401 from <url> - <description>".
    assert out["error"]["status"] == 401
    assert out["error"]["message"].endswith("- The access token provided is invalid.")
    assert sim.product_device_ids(PRODUCT) == ids
