"""``fwtool convert``: Intel HEX <-> flat binary, the direction told by the input's content."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.errors import FirmwareError


def _address(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number (use 0x... for hex)", param_hint="--address") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise click.BadParameter(f"{value:#x} is outside the 32-bit address space", param_hint="--address")
    return value


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--address", help="Load address for bin -> hex (default: the Particle module's start address).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def convert(source: Path, target: Path, address: str | None, as_json: bool) -> None:
    """Convert SOURCE to TARGET: Intel HEX becomes a flat binary, a binary becomes Intel HEX."""
    from firmware_tools.cli.common import refuse_overwriting
    from firmware_tools.fileio import write_atomic
    from firmware_tools.formats import read_firmware
    from firmware_tools.ihex import bin_to_hex

    load_address = _address(address)
    refuse_overwriting(source, target, how="choose another TARGET")
    firmware = read_firmware(source)
    if firmware.container == "ihex":
        if load_address is not None:
            raise click.UsageError("--address applies to bin -> hex; an Intel HEX file carries its addresses")
        out, kind, at = firmware.data, "bin", firmware.base_address
    else:
        if load_address is None:
            from firmware_tools.particle import parse_module

            try:
                load_address = parse_module(firmware.data, name=str(source)).prefix.start_address
            except FirmwareError as exc:
                exc.hint = "pass --address for a file that is not a Particle module"
                exc.args = (exc.one_line(),)
                raise
        out, kind, at = bin_to_hex(firmware.data, load_address), "ihex", load_address
    _check_target_name(source, target, kind)
    write_atomic(target, out)
    if as_json:
        record = {
            "file": str(source),
            "output": str(target),
            "container": kind,
            "address": at,
            "size": len(firmware.data),
        }
        click.echo(json.dumps(record, indent=2))
    else:
        where = f" at {at:#x}" if at is not None else ""
        label = "Intel HEX" if kind == "ihex" else "binary"
        click.echo(f"wrote {target}: {len(firmware.data)} bytes as {label}{where}")


# Names that say the opposite of what would be written: almost always a swapped SOURCE and TARGET.
_SUFFIXES = {"bin": (".hex", ".ihex"), "ihex": (".bin",)}


def _check_target_name(source: Path, target: Path, kind: str) -> None:
    if target.suffix.lower() in _SUFFIXES[kind]:
        what = "a flat binary" if kind == "bin" else "Intel HEX"
        was = "Intel HEX" if kind == "bin" else "a binary"
        raise click.UsageError(
            f"{source} is {was}, so {target} would hold {what} despite its name; "
            "the direction is told by SOURCE's content (did you swap SOURCE and TARGET?)"
        )
