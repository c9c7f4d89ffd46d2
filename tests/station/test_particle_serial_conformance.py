"""Real Particle modules from the reference corpus, flashed over the simulated serial link, arrive byte-exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.devices.base import FlashImage
from station.devices.particle_serial import ParticleSerialDevice
from station.sim.particle_serial import PLATFORMS, SimulatedSerialDevice
from station.sim.timing import TimingModel
from tests.conftest import fixture_dir, fixture_files

_NAMES = {p.platform_id: name for name, p in PLATFORMS.items()}


def _flashable(path: Path) -> bool:
    """A valid module of a simulated platform, for a slot that platform has."""
    expected = path.with_suffix(".expected.json")
    if not expected.exists():
        return False
    facts = json.loads(expected.read_text())
    prefix = facts.get("prefixInfo") or {}
    name = _NAMES.get(prefix.get("platformID", -1))
    if not facts.get("crc", {}).get("ok") or name is None:
        return False
    slot = PLATFORMS[name].slot(prefix["moduleFunction"], prefix["moduleIndex"])
    return slot is not None and path.stat().st_size <= slot.max_size and prefix.get("moduleFlags", 0) == 0


MODULES = [p for p in fixture_files("particle") if _flashable(p)]


@pytest.mark.skipif(not MODULES, reason="no flashable modules in the reference corpus")
@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_reference_module_is_installed_byte_exact(path: Path) -> None:
    fixture_dir("particle")
    prefix = json.loads(path.with_suffix(".expected.json").read_text())["prefixInfo"]
    data = path.read_bytes()
    with SimulatedSerialDevice(_NAMES[prefix["platformID"]], timing=TimingModel(enabled=False)) as sim:
        image = FlashImage(path.name, data, int(prefix["moduleStartAddy"], 16))
        with ParticleSerialDevice(sim.port, timeout=1.0, batch_gap=0.02, reconnect_timeout=5.0) as dev:
            dev.flash([image])
            dev.verify([image])
        assert sim.installed(prefix["moduleFunction"], prefix["moduleIndex"]) == data
