"""``station label``: reprint queued unit labels (one device, or every one not printed) and preview them as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from station.cli.registry_cmd import db_option, open_registry
from station.errors import InputError

if TYPE_CHECKING:
    from station.labels.printer import LabelConfig
    from station.profile import Profile


def _config(profile_path: Path) -> tuple[Profile, LabelConfig]:
    from station.labels.printer import LabelConfig
    from station.profile import load_profile

    profile = load_profile(profile_path)
    if profile.label_printer is None:
        raise InputError(
            f"{profile_path}: the profile has no [label] section", hint='add [label] printer = "tcp://HOST:9100"'
        )
    where = f"{profile_path} [label]"
    return profile, LabelConfig.from_mapping(profile.label_printer, where=where, base_dir=profile.path.parent)


@click.group()
def label() -> None:
    """Unit labels printed on PASS (the profile's [label] section names the printer)."""


@label.command("reprint")
@db_option
@click.argument("device_id", required=False)
@click.option("--failed", "failed", is_flag=True, help="Every label that has not reached the printer yet.")
@click.option(
    "--profile", "profile_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Line profile."
)
@click.option("--operator", metavar="NAME", help="Who reprints (on a station with operators: signs in with a PIN).")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path), help="The operator's PIN file (0600).")
@click.pass_context
def reprint(
    ctx: click.Context,
    db: str | None,
    device_id: str | None,
    failed: bool,
    profile_path: Path,
    operator: str | None,
    pin_file: Path | None,
) -> None:
    """Print DEVICE_ID's label again, or with --failed every queued label that did not print.

    Exit 0 when every label reached the printer, 1 when one did not (it stays queued).
    """
    from station.labels.service import LabelService
    from station.store.audit import AuditAction
    from station.trace.roles import Right
    from station.trace.signin import sign_in_for

    if (device_id is None) == (not failed):
        raise click.UsageError("name one DEVICE_ID, or pass --failed")
    profile, config = _config(profile_path)
    with open_registry(db) as registry:
        actor = sign_in_for(registry, operator, Right.REPRINT, station_id=profile.station_id, pin_file=pin_file)
        trace = registry.trace
        if device_id is not None:
            found = trace.labels(device_id=device_id)
            if not found:
                raise InputError(
                    f"no label was made for device {device_id}", hint="labels are made when a board passes"
                )
            records = [found[-1]]
        else:
            records = trace.labels(not_printed=True)
        service = LabelService(registry, config)
        outcomes = []
        for record in records:
            registry.audit.append(
                AuditAction.LABEL_REPRINT,
                station_id=actor.station_id,
                actor=actor.name,
                role=actor.role,
                subject=record.device_id,
                after={"label_id": record.id, "printer": config.printer},
            )
            outcomes.append(service.reprint(record))
    for o in outcomes:
        click.echo(f"{o.device_id}: {'printed' if o.ok else 'NOT printed: ' + o.message}")
    if not outcomes:
        click.echo("no labels waiting to be printed")
    if any(not o.ok for o in outcomes):
        ctx.exit(1)


@label.command("preview")
@db_option
@click.argument("device_id")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG file to write."
)
@click.option("--zpl", "zpl_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the ZPL here.")
def preview(db: str | None, device_id: str, output: Path, zpl_out: Path | None) -> None:
    """Write DEVICE_ID's last label as a PNG (the same fields and QR payload as the printed one)."""
    from station.labels.model import UnitLabel
    from station.labels.preview import render_png
    from station.labels.zpl import render_zpl

    with open_registry(db) as registry:
        found = registry.trace.labels(device_id=device_id)
    if not found:
        raise InputError(f"no label was made for device {device_id}", hint="labels are made when a board passes")
    unit = UnitLabel.from_fields(found[-1].fields)
    output.write_bytes(render_png(unit))
    if zpl_out is not None:
        zpl_out.write_bytes(render_zpl(unit))
    click.echo(f"wrote {output}")
