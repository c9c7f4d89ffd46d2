"""The layers import only what DESIGN.md allows them: inner never imports outer.

protocols know transports only; devices know protocols and firmware_tools; the simulators know
protocols' constants and firmware_tools (never the station's device code, so they cannot share its
misunderstandings); and no production layer imports a simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import station

STATION = Path(station.__file__).parent

# For each layer: the project packages its modules may import (prefix match), besides their own.
ALLOWED = {
    "protocols": ("station.errors", "station.protocols"),
    "devices": ("station.errors", "station.protocols", "station.devices", "firmware_tools"),
    "sim": ("station.protocols", "station.sim", "firmware_tools"),
    "discovery": ("station.errors", "station.protocols", "station.devices", "station.discovery"),
    # The runner consumes discovery's candidates and records through the store; the cloud, the
    # screens and the simulators are composed around it (station/session.py, station/line_setup.py).
    "line": (
        "station.errors",
        "station.devices",
        "station.discovery",
        "station.store",
        "station.line",
        "station.profile",
        "firmware_tools",
    ),
    "store": ("station.errors", "station.store"),
    "cloud": ("station.errors", "station.store", "station.cloud", "firmware_tools"),
    "ui": ("station.line.events", "station.ui"),
    # Traceability: operators, PINs, the release floor and the run's audit, over the store.
    "trace": ("station.errors", "station.store", "station.trace", "firmware_tools"),
    # Unit labels: rendered from the store's records, sent to a printer; no line, no cloud.
    "labels": ("station.errors", "station.store", "station.labels"),
}
NEVER_SIM = ("protocols", "devices", "discovery", "line", "store", "cloud", "ui", "trace", "labels")


def _project_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n.split(".")[0] in ("station", "firmware_tools")]


def _modules(layer: str) -> list[Path]:
    return sorted((STATION / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    allowed = ALLOWED[layer]
    wrong = [
        f"{path.relative_to(STATION.parent)} imports {name}"
        for path in _modules(layer)
        for name in _project_imports(path)
        if not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert not wrong, "; ".join(wrong)


def test_no_production_layer_imports_a_simulator() -> None:
    wrong = [
        f"{path.relative_to(STATION.parent)} imports {name}"
        for layer in NEVER_SIM
        if (STATION / layer).is_dir()
        for path in _modules(layer)
        for name in _project_imports(path)
        if name == "station.sim" or name.startswith("station.sim.")
    ]
    assert not wrong, "; ".join(wrong)


def test_the_dfu_simulator_states_its_lower_bound_for_plain_address_and_bytes_pairs() -> None:
    from station.devices.base import FlashImage
    from station.sim.dfu_device import SimulatedDfuDevice
    from station.sim.timing import TimingModel

    sim = SimulatedDfuDevice("photon", port_path="1-1", timing=TimingModel(enabled=False))
    data = b"\x00" * 10000
    pair = sim.lower_bound([(0x080A0000, data)])
    assert pair == sim.lower_bound([FlashImage("user", data, 0x080A0000)])
    assert 1.0 < pair < 1.2  # dominated by the 128 KiB sector erase


def test_firmware_tools_knows_nothing_of_the_station() -> None:
    import firmware_tools

    root = Path(firmware_tools.__file__).parent
    wrong = [
        f"{path.relative_to(root.parent)} imports {name}"
        for path in sorted(root.rglob("*.py"))
        for name in _project_imports(path)
        if name.split(".")[0] == "station"
    ]
    assert not wrong, "; ".join(wrong)
