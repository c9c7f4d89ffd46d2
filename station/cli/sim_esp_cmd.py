"""``station sim esp``: serve one simulated ESP chip's ROM loader on a TCP port until interrupted."""

from __future__ import annotations

import threading

import click

from station.cli.signals import sigterm_as_interrupt
from station.errors import InputError
from station.sim.esp_chips import CHIPS
from station.sim.faults import FaultPlan, parse_faults
from station.sim.timing import TimingModel


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:5555")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("esp")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where to listen (port 0 = any free port).")
@click.option("--chip", type=click.Choice(sorted(CHIPS)), default="esp32", show_default=True)
@click.option("--mac", default=None, help="The eFuse MAC, aa:bb:cc:dd:ee:ff (default: random, Espressif OUI).")
@click.option("--no-timing", is_flag=True, help="Answer at once instead of at UART and flash speed.")
@click.option("--faults", default="", metavar="SPEC", help="Faults to inject, e.g. disconnect@3,refuse-block@5.")
@click.option("--secure-download", is_flag=True, help="eFuses in Secure Download Mode: no register reads, MD5 or stub.")
def sim_esp(listen: str, chip: str, mac: str | None, no_timing: bool, faults: str, secure_download: bool) -> None:
    """Run a simulated ESP chip in download mode; esptool reaches it with --port socket://HOST:PORT."""
    from station.sim.esp_loader import SimulatedEsp

    host, port = _split_listen(listen)
    try:
        plan = FaultPlan(parse_faults(faults))
        sim = SimulatedEsp(
            chip, mac, timing=TimingModel(enabled=not no_timing), faults=plan, secure_download=secure_download
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        url = sim.serve_tcp(host, port)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        with sigterm_as_interrupt():  # before the banner: whoever reads it may stop us at once
            sdm = " in Secure Download Mode" if secure_download else ""
            click.echo(f"{sim.chip_name} MAC {sim.mac}{sdm} listening on {url} (Ctrl-C to stop)")
            while not threading.Event().wait(1.0):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
