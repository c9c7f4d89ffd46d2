"""``station sim ...``: run simulated devices and a simulated console for people and other tools."""

from __future__ import annotations

import click

from firmware_tools.cli.lazy import LazyGroup

SIMULATORS = {
    "esp": "station.cli.sim_esp_cmd:sim_esp",
    "particle-serial": "station.cli.sim_particle_serial_cmd:sim_particle_serial",
    "console": "station.cli.sim_console_cmd:sim_console",
}


@click.group(cls=LazyGroup, lazy_commands=SIMULATORS)
def sim() -> None:
    """Run a simulated device or cloud console until interrupted."""
