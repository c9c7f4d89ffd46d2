"""``fwtool validate``: named checks on firmware files, exit 0 all pass / 1 a check failed / 2 unusable."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.cli.common import chip_option, platform_option
from firmware_tools.errors import FirmwareError

_MARK = {True: "ok  ", False: "FAIL", None: "n/a "}


@click.command()
# Not click.Path(dir_okay=False): a folder among the files is reported like any other unusable file.
@click.argument("files", nargs=-1, required=True, metavar="FILE... | ADDRESS=FILE...")
@click.option("--platform", callback=platform_option, help="Expected Particle platform, by name (argon) or id (12).")
@click.option("--product-id", type=click.IntRange(0, 0xFFFF), help="Expected product id.")
@click.option("--product-version", type=click.IntRange(0, 0xFFFF), help="Expected product version.")
@click.option("--chip", callback=chip_option, help="Expected ESP chip (esp32, esp32c3, ...).")
@click.option("--version", "app_version", help="Expected ESP app version string.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.pass_context
def validate(
    ctx: click.Context,
    files: tuple[str, ...],
    platform: int | None,
    product_id: int | None,
    product_version: int | None,
    chip: str | None,
    app_version: str | None,
    as_json: bool,
) -> None:
    """Check each FILE: checksums, size, known platform and kind, dependencies, and what you expect.

    ESP images and partition tables given as ADDRESS=FILE are also checked as one flash layout, by
    the rules fwtool release applies (bootloader at the chip's offset, table at 0x8000, apps at
    app partitions, no overlaps, inside the flash the bootloader declares).

    Exit 0 when every check passes, 1 when any check fails, 2 when a file is not usable firmware.
    """
    from firmware_tools.cli.release_cmd import parse_image_argument
    from firmware_tools.formats import detect, read_firmware

    expect = Expectations(
        platform=platform,
        product_id=product_id,
        product_version=product_version,
        chip=chip,
        version=app_version,
    )
    worst = 0
    records: list[dict[str, object]] = []
    placed: list[tuple[int, Path, bytes]] = []
    for text in files:
        address, path = parse_image_argument(text)
        try:
            firmware = read_firmware(path)
            fmt = detect(firmware.data, name=str(path))
            try:
                report = fmt.validate(firmware.data, expect)
                if firmware.container == "ihex" and fmt.name == "particle-module":
                    report = ValidationReport((*report.checks, _hex_placement(firmware.data, firmware.base_address)))
            except FirmwareError as exc:
                raise exc.with_file(str(path)) from None
        except FirmwareError as exc:
            worst = 2
            exc.with_file(str(path))
            if as_json:
                records.append({"file": str(path), "error": exc.one_line()})
            else:
                click.echo(f"fwtool: error: {exc.one_line()}", err=True)
            continue
        if address is not None and fmt.name in ("esp-image", "esp-partition-table"):
            placed.append((address, path, firmware.data))
        if not report.ok:
            worst = max(worst, 1)
        if as_json:
            records.append({"file": str(path), "format": fmt.name, "ok": report.ok, "checks": report.to_json()})
        else:
            _print_report(path, fmt.name, report.ok, report.checks, report.failed)
    if placed:
        layout = _layout_report(placed, chip)
        if layout is not None:
            if not layout.ok:
                worst = max(worst, 1)
            if as_json:
                records.append(
                    {"file": "(flash layout)", "format": "esp-layout", "ok": layout.ok, "checks": layout.to_json()}
                )
            else:
                _print_report(Path("flash layout"), "esp", layout.ok, layout.checks, layout.failed)
    if as_json:
        click.echo(json.dumps(records, indent=2))
    if worst:
        ctx.exit(worst)


def _print_report(path: Path, format_name: str, ok: bool, checks: tuple[Check, ...], failed: tuple[Check, ...]) -> None:
    verdict = "OK" if ok else "FAILED: " + ", ".join(c.name for c in failed)
    click.echo(f"{path} ({format_name}): {verdict}")
    for check in checks:
        click.echo(f"  {_MARK[check.ok]} {check.name}: {check.reason}")


def _layout_report(placed: list[tuple[int, Path, bytes]], chip: str | None) -> ValidationReport | None:
    """The ADDRESS=FILE images as one ESP flash layout; None when no image names the chip."""
    from firmware_tools.bundle.partition_table import parse_partition_table
    from firmware_tools.esp.flash_layout import Kind, layout_checks, piece_of

    pieces = [piece_of(data, name=path.name, address=address) for address, path, data in placed]
    chip = chip or next((p.chip for p in pieces if p.chip is not None), None)
    if chip is None:
        return None
    tables = [(p, data) for p, (_, _, data) in zip(pieces, placed, strict=True) if p.kind is Kind.PARTITION_TABLE]
    table = parse_partition_table(tables[0][1]) if tables else None
    checks = layout_checks(pieces, chip=chip, table=table)
    return ValidationReport(tuple(Check(f"{name}: {c.name}", c.ok, c.reason) for name, c in checks))


def _hex_placement(data: bytes, base_address: int | None) -> Check:
    """An Intel HEX file must place a module where the module says it starts."""
    from firmware_tools.particle import parse_module

    start = parse_module(data).prefix.start_address
    if base_address == start:
        return Check("hex-address", True, f"the Intel HEX places the module at its start address {start:#x}")
    where = "nowhere" if base_address is None else f"at {base_address:#x}"
    return Check("hex-address", False, f"the Intel HEX places the module {where}, but it starts at {start:#x}")
