"""``station doctor``: what stands between this machine and flashing, each with its fix."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--db", "db_option", help="Registry file (default: BENCHFLASH_DB or the data folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--usb-ids",
    "usb_ids",
    is_flag=True,
    help="Print the USB IDs the station flashes (the family table) instead of checking: vid, pid, family, mode, name.",
)
@click.pass_context
def doctor(ctx: click.Context, db_option: str | None, as_json: bool, usb_ids: bool) -> None:
    """Check libusb, device permissions, serial access, udev rules and the registry."""
    if usb_ids:
        _print_usb_ids(as_json)
        return
    from station.doctor import run_checks
    from station.store.paths import resolve_db_path

    checks = run_checks(resolve_db_path(db_option))
    if as_json:
        click.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        for c in checks:
            mark = {True: "ok  ", False: "FAIL", None: "n/a "}[c.ok]
            click.echo(f"{mark} {c.name}: {c.detail}")
            if c.fix:
                click.echo(f"     fix: {c.fix}")
    if any(c.ok is False for c in checks):
        ctx.exit(1)


def _print_usb_ids(as_json: bool) -> None:
    """The family table's USB IDs: one JSON list of {vid, pid, family, mode, name}, or one line each."""
    from station.devices.families import usb_ids_json

    rows = usb_ids_json()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['vid']}:{row['pid']}  {row['family']:<16} {row['mode']:<10} {row['name']}")
