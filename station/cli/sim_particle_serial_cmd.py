"""``station sim particle-serial``: a simulated Particle device in listening mode on a pty, linked at PATH."""

from __future__ import annotations

from pathlib import Path

import click

from station.cli.signals import sigterm_as_interrupt
from station.errors import InputError
from station.sim.faults import FaultPlan, parse_faults
from station.sim.particle_serial import PLATFORMS, SimulatedSerialDevice
from station.sim.timing import TimingModel


@click.command("particle-serial")
@click.option(
    "--link",
    "link",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Symlink to create (or replace) pointing at the simulated device's pty.",
)
@click.option(
    "--platform",
    type=click.Choice(sorted(PLATFORMS)),
    default="photon",
    show_default=True,
    help="Which Particle platform to simulate.",
)
@click.option("--device-id", default=None, help="24 hex digits; random when not given.")
@click.option("--faults", default="", help="Faults to inject, e.g. 'disconnect@12,stall' (YModem packet numbers).")
@click.option("--no-timing", is_flag=True, help="Answer as fast as possible instead of at hardware speed.")
@click.option("--uart", is_flag=True, help="Model a UART at the port's baud rate instead of USB CDC.")
def sim_particle_serial(
    link: Path, platform: str, device_id: str | None, faults: str, no_timing: bool, uart: bool
) -> None:
    """Run a simulated Particle device in listening mode until Ctrl-C.

    Open PATH with any serial tool (particle-cli, screen, pyserial, lrzsz's sb --ymodem) at
    28800 baud; keys i, m, s, v, c, f and x answer as Device OS does.
    """
    if link.exists() and not link.is_symlink():
        raise InputError(f"{link} exists and is not a symlink; refusing to replace it")
    try:
        plan = FaultPlan(parse_faults(faults))
        sim = SimulatedSerialDevice(
            platform, device_id, timing=TimingModel(enabled=not no_timing), faults=plan, link=link, uart=uart
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        with sigterm_as_interrupt():  # before the link appears: whoever sees it may stop us at once
            path = sim.start()
            click.echo(f"simulated {platform} {sim.device_id} on {path}, linked at {link}; Ctrl-C to stop", err=True)
            while not sim.entered_dfu.wait(0.5):
                pass
        click.echo("the device rebooted into DFU mode (14400 baud); its serial port is gone", err=True)
    finally:
        sim.stop()
        if link.is_symlink():
            link.unlink()
