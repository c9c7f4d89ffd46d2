"""``station check``: validate a line profile and its bundle, and say what a run would do."""

from __future__ import annotations

import json

import click

from firmware_tools.errors import FirmwareError
from station.errors import StationError


@click.command()
@click.option("--profile", "profile_path", required=True, type=click.Path(dir_okay=False), help="Line profile (TOML).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def check(ctx: click.Context, profile_path: str, as_json: bool) -> None:
    """Check a profile and the bundle it names (signature, target); exit 1 on any problem."""
    from station.line_setup import prepare_line

    try:
        line = prepare_line(profile_path)
    except (StationError, FirmwareError) as exc:
        # A check that finds a problem is a failed check, whatever kind of problem it is.
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        else:
            click.echo(f"FAIL: {exc}", err=True)
        ctx.exit(1)
    plan, profile, m = line.plan, line.profile, line.bundle.manifest
    token_state = None
    if line.cloud is not None:
        from station.cloud.errors import CloudConfigError
        from station.cloud.token import load_token

        # The same reader `station run` uses, so a token file of the wrong mode is caught here too.
        cloud = line.cloud
        try:
            load_token(cloud)
        except CloudConfigError as exc:
            token_state = f"NOT usable: {exc.message}"
        else:
            token_state = f"file {cloud.token_file}" if cloud.token_file is not None else f"${cloud.token_env} set"
    summary = {
        "ok": True,
        "station_id": plan.station_id,
        "product": {"id": m.product.id, "name": m.product.name, "version": m.product_version},
        "target": plan.target.describe(),
        "bundle": str(profile.bundle),
        "bundle_sha256": line.bundle_sha256,
        "signer_key_id": line.bundle.signer.key_id if line.bundle.signer else None,
        "mode": plan.mode.value,
        "verify": plan.verify.value,
        "confirm_version": plan.confirm_version,
        "job_timeout": plan.job_timeout,
        "images": [
            {"name": i.name, "kind": i.kind, "address": i.address, "size": i.size, "sha256": i.sha256}
            for i in plan.images
        ],
        "slots": dict(profile.slot_labels),
        "unit_data": None if plan.unit_data is None else plan.unit_data.describe(),
        "cloud": None if line.cloud is None else {"product": line.cloud.product, "token": token_state},
    }
    if plan.target.is_esp:
        summary["esp"] = {"baud": profile.esp_baud, "connect_attempts": profile.connect_attempts}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    signer = summary["signer_key_id"] or "unsigned (require_signature = false)"
    click.echo(f"ok: {profile.path}")
    click.echo(f"  station {plan.station_id}: product {m.product.describe()} version {m.product_version}")
    click.echo(f"  bundle {profile.bundle} signed by {signer}")
    click.echo(f"  target {plan.target.describe()}; any other board fails before anything is written")
    if plan.target.is_esp:
        click.echo(f"  ESP boards at {profile.esp_baud} baud, {profile.connect_attempts} connect attempts each")
    if plan.mode.value == "flash":
        verify = {"always": "then verify, ", "required": "then verify (a board that cannot be checked fails), "}.get(
            plan.verify.value, ""
        )
        click.echo(f"  each board: identify, flash {len(plan.images)} image(s), {verify}restart, record")
        for i in plan.images:
            click.echo(f"    {i.address:#010x}  {i.kind:<20} {i.size:>9} bytes  {i.name}")
    else:
        click.echo("  each board: identify and record only (firmware goes on over the air at setup)")
    if plan.unit_data is not None:
        click.echo(f"  {plan.unit_data.describe()}")
    for port, label in sorted(profile.slot_labels.items()):
        click.echo(f"  slot {label} = port {port}")
    if line.cloud is not None:
        click.echo(f"  passed boards are imported into product {line.cloud.product} (token: {token_state})")
    else:
        click.echo("  no [cloud] section: records stay in the registry (station export)")
