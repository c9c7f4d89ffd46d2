"""``station devices``: what is attached and flashable now: family, port path, IDs, mode.

Each device is identified without changing what it does (a Particle board in normal mode is asked
over USB, not switched into DFU mode). A device that cannot be identified is listed with the reason
and the fix (a permission problem names the udev rules), and the command exits 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import click

from station.devices.base import Device, DeviceDescription, DeviceIdentity
from station.discovery.base import Candidate, Source, scan_all
from station.discovery.probe import peek_device
from station.errors import DeviceError, StationError

# Identification of several boards runs side by side; each has its own timeouts.
_MAX_PARALLEL = 8


@dataclass(frozen=True)
class Listed:
    """One attached device and what identifying it gave (an identity, or an error)."""

    description: DeviceDescription
    identity: DeviceIdentity | None
    error: StationError | None

    def to_json(self) -> dict[str, object]:
        d, i = self.description, self.identity
        return {
            "port_path": d.port_path,
            "family": d.family.value,
            "mode": d.mode.value,
            "vid": None if d.vid is None else f"{d.vid:04x}",
            "pid": None if d.pid is None else f"{d.pid:04x}",
            "usb_serial_number": d.usb_serial_number,
            "serial_port": d.serial_port,
            "device_id": None if i is None else i.device_id,
            "platform": None if i is None else i.platform,
            "platform_id": None if i is None else i.platform_id,
            "mac": None if i is None else i.mac,
            "firmware": None if i is None else i.firmware,
            "error": None if self.error is None else error_json(self.error),
        }


def error_json(error: StationError) -> dict[str, object]:
    return {"reason": error.reason.value, "message": error.one_line(), "hint": error.hint}


def identify_candidate(candidate: Candidate) -> Listed:
    """Connect without switching modes, ask who it is, let go."""
    try:
        device = peek_device(candidate)
    except StationError as exc:
        return Listed(candidate.description, None, exc)
    try:
        identity = device.identify()
        return Listed(_with_serial_number(candidate.description, device), identity, None)
    except StationError as exc:
        return Listed(candidate.description, None, exc)
    except Exception as exc:  # a family's bug must not hide the other devices
        return Listed(candidate.description, None, DeviceError(f"internal error: {type(exc).__name__}: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            device.close()


def _with_serial_number(description: DeviceDescription, device: Device) -> DeviceDescription:
    """Scans do not open a USB device, so its serial-number string is only known once it is open."""
    if description.usb_serial_number is not None:
        return description
    return dataclasses.replace(description, usb_serial_number=device.describe().usb_serial_number)


def list_devices(sources: Sequence[Source]) -> list[Listed]:
    """Every attached device from ``sources``, identified, in slot order."""
    candidates = sorted(scan_all(sources).values(), key=lambda c: c.slot)
    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(candidates))) as pool:
        return list(pool.map(identify_candidate, candidates))


def source_problems(sources: Sequence[Source]) -> list[StationError]:
    """Problems a whole source reported on its last scan (no libusb, serial ports unreadable)."""
    problems = []
    for source in sources:
        problem = getattr(source, "problem", None)
        if isinstance(problem, StationError):
            problems.append(problem)
    return problems


def open_sources(
    ctx: click.Context, simulate: str | None, *, sim_timing: bool, esp_options: Mapping[str, Any] | None = None
) -> tuple[list[Source], list[Source]]:
    """``(sources, to_close)``: sources a caller put in ``ctx.obj["sources"]`` (tests, scripts; the caller
    closes them), else the simulated bench when ``--simulate`` is given, else the real sources.
    ``esp_options`` go to every ESP board's device (e.g. the chip the file is for)."""
    given = (ctx.find_root().obj or {}).get("sources")
    if given is not None:
        return list(given), []
    if simulate is not None:
        from station.demo.simulated_bench import bench_from_spec

        # Seeded by the spec: the same SPEC attaches the same boards (device IDs, MACs) every time,
        # so an ID that `station devices --simulate S` lists names a board for `station flash --simulate S`.
        bench = bench_from_spec(simulate, timing=sim_timing, rng=random.Random(simulate), esp_options=esp_options)
        return [bench], [bench]
    from station.discovery import all_sources

    sources = all_sources(esp_options=esp_options)
    return sources, sources


def _row(listed: Listed) -> str:
    d, i = listed.description, listed.identity
    if i is not None:
        who = f"{i.device_id}  {i.platform}"
        extra = ", ".join(x for x in (i.mac and f"mac {i.mac}", i.firmware) if x)
        if extra:
            who += f"  ({extra})"
    else:
        assert listed.error is not None
        who = f"cannot identify: {listed.error.one_line()}"
    return f"{d.port_path:<12} {d.family.value:<16} {d.mode.value:<10} {who}"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every device.")
@click.option(
    "--simulate",
    metavar="SPEC",
    help="Attach simulated devices instead of looking at the hardware, e.g. photon-dfu:2,esp32:1.",
)
@click.option("--sim-timing/--no-sim-timing", default=True, envvar="BENCHFLASH_SIM_TIMING", hidden=True)
@click.pass_context
def devices(ctx: click.Context, as_json: bool, simulate: str | None, sim_timing: bool) -> None:
    """List attached flashable devices: family, port path, device ID, platform or chip, mode."""
    sources, to_close = open_sources(ctx, simulate, sim_timing=sim_timing)
    try:
        listed = list_devices(sources)
        problems = source_problems(sources)
    finally:
        for source in to_close:
            source.close()
    failed = any(item.error is not None for item in listed)
    if as_json:
        document = {
            "devices": [item.to_json() for item in listed],
            "problems": [error_json(p) for p in problems],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        for problem in problems:
            click.echo(f"warning: {problem.one_line()}", err=True)
        if not listed:
            click.echo("no flashable devices attached", err=True)
        for item in listed:
            click.echo(_row(item))
    if failed:
        ctx.exit(1)
