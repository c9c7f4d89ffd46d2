"""``fwtool inspect``: every fact a firmware file states, for any format the registry knows."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.errors import FirmwareError


def describe_file(path: Path) -> dict[str, object]:
    """The format's facts about ``path`` as one JSON object, ``file`` first. Raises FirmwareError."""
    from firmware_tools.formats import detect, read_firmware

    firmware = read_firmware(path)
    fmt = detect(firmware.data, name=str(path))
    try:
        facts = fmt.inspect(firmware.data)
    except FirmwareError as exc:
        raise exc.with_file(str(path)) from None
    out: dict[str, object] = {"file": str(path), **facts, "container": firmware.container}
    if firmware.base_address is not None:
        out["hex_base_address"] = firmware.base_address
    return out


def summarize_file(path: Path) -> list[str]:
    """The format's facts about ``path`` as lines. Raises FirmwareError."""
    from firmware_tools.formats import detect, read_firmware

    firmware = read_firmware(path)
    fmt = detect(firmware.data, name=str(path))
    try:
        lines = fmt.summary(firmware.data)
    except FirmwareError as exc:
        raise exc.with_file(str(path)) from None
    head = f"{path} ({fmt.name}"
    if firmware.container == "ihex":
        head += f", Intel HEX at {firmware.base_address:#x}" if firmware.base_address is not None else ", Intel HEX"
    return [head + ")", *lines]


@click.command()
# Not click.Path(dir_okay=False): a folder among the files is reported like any other unusable file.
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.pass_context
def inspect(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Show what each FILE is: format, platform, addresses, product fields, checksums.

    Intel HEX files are unwrapped first (told apart by content, not by name). Exit 2 if any file
    cannot be read as firmware.
    """
    unusable = False
    records: list[dict[str, object]] = []
    for i, path in enumerate(files):
        try:
            if as_json:
                records.append(describe_file(path))
            else:
                if i:
                    click.echo("")
                click.echo("\n".join(summarize_file(path)))
        except FirmwareError as exc:
            unusable = True
            exc.with_file(str(path))
            if as_json:
                records.append({"file": str(path), "error": exc.one_line()})
            else:
                click.echo(f"fwtool: error: {exc.one_line()}", err=True)
    if as_json:
        click.echo(json.dumps(records, indent=2))
    if unusable:
        ctx.exit(2)
