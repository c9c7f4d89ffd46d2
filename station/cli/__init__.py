"""``station``: the factory bench's command line. Each command lives in its own module."""

from __future__ import annotations

import click

from firmware_tools.cli.lazy import LazyGroup
from firmware_tools.errors import FirmwareError
from station.errors import StationError

COMMANDS = {
    "devices": "station.cli.devices_cmd:devices",
    "flash": "station.cli.flash_cmd:flash",
    "sim": "station.cli.sim_cmd:sim",
    "run": "station.cli.run_cmd:run",
    "check": "station.cli.check_cmd:check",
    "demo": "station.cli.demo_cmd:demo",
    "history": "station.cli.registry_cmd:history",
    "stats": "station.cli.registry_cmd:stats",
    "export": "station.cli.registry_cmd:export",
    "doctor": "station.cli.doctor_cmd:doctor",
    "sync": "station.cli.sync_cmd:sync",
    "console": "station.cli.console_cmd:console",
    "operators": "station.cli.trace_cmd:operators",
    "audit": "station.cli.trace_cmd:audit",
    "label": "station.cli.label_cmd:label",
}


@click.group(
    name="station",
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    error_types=(StationError, FirmwareError),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="benchflash")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Flash, verify and record every board on the bench; sync the records to the cloud console."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
