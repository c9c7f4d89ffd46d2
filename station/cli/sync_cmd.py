"""``station sync``: import the devices the registry queued into their product, then report.

Prints counts per state and the IDs that need attention (claimed outside the team, invalid,
protected, or refused); exits 1 when any do, or when the cloud could not be reached. ``--requeue ID``
puts devices back in the queue once what stopped them is fixed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from firmware_tools.errors import FirmwareError
from station.cli.cloud_output import echo_error_json, error_payload
from station.cli.registry_cmd import db_option, open_registry
from station.cloud.client import ParticleCloud
from station.cloud.config import CloudConfig
from station.cloud.errors import CloudConfigError, CloudError
from station.cloud.groups import load_device_names
from station.cloud.requeue import Requeued, requeue
from station.cloud.serial_names import SerialNames
from station.cloud.sync import DEFAULT_MAX_FAILURES, DrainReport, SyncWorker
from station.cloud.token import load_token
from station.cloud.verify import VerifyReport, verify_product
from station.errors import StationError
from station.store import Outbox, OutboxEntry, OutboxState, Registry
from station.store.audit import AuditAction
from station.store.trace import Actor

# Text output lists at most this many IDs per product; --json lists them all.
_SHOWN = 50
ATTENTION_STATES = (OutboxState.NEEDS_ATTENTION, OutboxState.INVALID, OutboxState.PROTECTED)


@dataclass(frozen=True)
class ProductSync:
    product: str
    counts: dict[OutboxState, int]
    attention: tuple[OutboxEntry, ...]
    drain: DrainReport | None
    verify: VerifyReport | None
    batches_planned: int

    @property
    def failed(self) -> bool:
        stopped = self.drain is not None and self.drain.stopped is not None
        refused = self.drain is not None and not self.drain.complete
        return bool(self.attention) or stopped or refused or (self.verify is not None and not self.verify.ok)


def _base_config(profile: str | None, product: str | None) -> CloudConfig | None:
    if profile is None:
        return CloudConfig(product=product) if product else None
    from station.profile import load_profile

    path = Path(profile)
    loaded = load_profile(path)
    if loaded.cloud is None:
        if not product:
            raise CloudConfigError(f"{path}: the profile has no [cloud] section", hint="add one, or pass --product")
        return CloudConfig(product=product)
    config = CloudConfig.from_mapping(loaded.cloud, where=f"{path} [cloud]", base_dir=path.parent)
    return config.with_overrides(product=product)


def _products(outbox: Outbox, config: CloudConfig | None) -> list[str]:
    if config is not None:
        return [config.product]
    seen: dict[str, None] = {}
    for entry in outbox.entries():
        seen.setdefault(entry.product, None)
    return list(seen)


@click.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing (no token needed).")
@click.option("--verify", "verify", is_flag=True, help="Then list the product's devices and compare.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--requeue",
    "requeue_ids",
    multiple=True,
    metavar="ID",
    help="Make this device pending again first, e.g. once it is unclaimed (repeatable).",
)
@db_option
@click.option("--profile", type=click.Path(dir_okay=False, exists=True), help="Take [cloud] from this line profile.")
@click.option("--product", help="Product ID or slug (default: the profile's, else every product queued).")
@click.option("--base-url", help="Cloud API base URL (default https://api.particle.io).")
@click.option("--token-env", help="Environment variable holding the token (default PARTICLE_ACCESS_TOKEN).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from this file (mode 0600).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), help="Device IDs per import request (default 500).")
@click.option(
    "--max-failures",
    type=click.IntRange(1, 1000),
    default=DEFAULT_MAX_FAILURES,
    show_default=True,
    help="Failed requests in a row before giving up until the next run.",
)
@click.option("--operator", metavar="NAME", help="Who syncs (on a station with operators: signs in with a PIN).")
@click.option(
    "--pin-file", type=click.Path(dir_okay=False, path_type=Path), help="The operator's PIN file (mode 0600)."
)
def sync(
    operator: str | None,
    pin_file: Path | None,
    dry_run: bool,
    verify: bool,
    as_json: bool,
    requeue_ids: tuple[str, ...],
    db: str | None,
    profile: str | None,
    product: str | None,
    base_url: str | None,
    token_env: str | None,
    token_file: str | None,
    batch_size: int | None,
    max_failures: int,
) -> None:
    """Import every queued device into its product; print counts per state and what needs attention.

    Exit 0 when every queued device is synced, 1 when some need attention or the cloud could not be
    reached or refused the token, 2 for unusable options, profile or token file.
    """
    if requeue_ids and dry_run:
        raise click.UsageError("--requeue changes the registry; it cannot be combined with --dry-run")
    overrides: dict[str, Any] = {
        "base_url": base_url,
        "token_env": token_env,
        "token_file": Path(token_file).expanduser() if token_file else None,
        "batch_size": batch_size,
    }
    results: list[ProductSync] = []
    fatal: CloudError | None = None
    try:
        config = _base_config(profile, product)
        with open_registry(db) as registry:
            actor = None
            if not dry_run:
                from station.cli.acting import station_name
                from station.trace.roles import Right
                from station.trace.signin import sign_in_for

                actor = sign_in_for(registry, operator, Right.SYNC, station_id=station_name(), pin_file=pin_file)
            outbox = registry.outbox
            requeued = requeue(outbox, requeue_ids, product=config.product if config else None) if requeue_ids else None
            for name in _products(outbox, config):
                cfg = (config or CloudConfig(product=name)).with_overrides(**overrides)
                result, fatal = _sync_product(outbox, cfg, dry_run=dry_run, verify=verify, max_failures=max_failures)
                results.append(result)
                if actor is not None and result.drain is not None:
                    _audit_sync(registry, actor, result)
                if fatal is not None:
                    break
    except (StationError, FirmwareError) as exc:
        if as_json:  # a script gets an object even when nothing could be done
            echo_error_json(exc)
        raise
    if as_json:
        payload = _as_json(results, dry_run=dry_run, requeued=requeued)
        if fatal is not None:
            payload["error"] = error_payload(fatal)
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_text(results, dry_run=dry_run, requeued=requeued)
    if fatal is not None:
        raise fatal
    if any(r.failed for r in results):
        click.get_current_context().exit(1)


def _audit_sync(registry: Registry, actor: Actor, result: ProductSync) -> None:
    """What this sync put into the console, in the audit log."""
    drain = result.drain
    assert drain is not None
    registry.audit.append(
        AuditAction.SYNC,
        station_id=actor.station_id,
        actor=actor.name,
        role=actor.role,
        subject=f"product {result.product}",
        after={
            "counts": {state.value: n for state, n in result.counts.items()},
            "stopped": drain.stopped,
        },
    )


def _sync_product(
    outbox: Outbox, cfg: CloudConfig, *, dry_run: bool, verify: bool, max_failures: int
) -> tuple[ProductSync, CloudError | None]:
    pending = outbox.counts(cfg.product)[OutboxState.PENDING]
    drain: DrainReport | None = None
    checked: VerifyReport | None = None
    fatal: CloudError | None = None
    if not dry_run and (pending or verify):
        token = load_token(cfg)
        with ParticleCloud.from_config(cfg, token) as client:
            if pending:
                worker = SyncWorker(
                    outbox,
                    client,
                    product=cfg.product,
                    batch_size=cfg.batch_size,
                    import_sims=cfg.import_sims,
                    device_names=SerialNames(
                        outbox.registry,
                        load_device_names(cfg.device_names) if cfg.device_names is not None else None,
                    ),
                )
                drain = worker.drain(max_failures=max_failures)
                fatal = drain.fatal
            if verify and fatal is None:
                try:
                    checked = verify_product(outbox, client, cfg.product, max_failures=max_failures)
                except CloudError as exc:
                    fatal = exc
    attention = tuple(e for s in ATTENTION_STATES for e in outbox.entries(state=s, product=cfg.product))
    result = ProductSync(
        product=cfg.product,
        counts=outbox.counts(cfg.product),
        attention=attention,
        drain=drain,
        verify=checked,
        batches_planned=math.ceil(pending / cfg.batch_size),
    )
    return result, fatal


def _entry_json(entry: OutboxEntry) -> dict[str, Any]:
    return {"device_id": entry.device_id, "state": entry.state.value, "last_error": entry.last_error}


def _as_json(results: Sequence[ProductSync], *, dry_run: bool, requeued: Requeued | None = None) -> dict[str, Any]:
    products = []
    for r in results:
        item: dict[str, Any] = {
            "product": r.product,
            "counts": {s.value: n for s, n in r.counts.items()},
            "attention": [_entry_json(e) for e in r.attention],
        }
        if dry_run:
            item["would_send"] = {"devices": r.counts[OutboxState.PENDING], "requests": r.batches_planned}
        if r.drain is not None:
            d = r.drain
            item["run"] = {
                "requests": d.requests,
                "devices_sent": d.devices_sent,
                "outcomes": {o.value: n for o, n in d.outcomes.items()},
                "failures": d.failures,
                "refused": list(d.rejected),
                "unmentioned": list(d.unmentioned),
                "stopped": d.stopped,
                "placed": d.placed,
            }
        if r.verify is not None:
            v = r.verify
            item["verify"] = {
                "ok": v.ok,
                "listed": v.listed,
                "believed_synced": v.believed_synced,
                "missing": list(v.missing),
                "listed_but_pending": list(v.listed_but_pending),
            }
        products.append(item)
    return {
        "dry_run": dry_run,
        "requeued": [
            {"device_id": e.device_id, "product": e.product, "was": e.state.value}
            for e in (requeued.requeued if requeued is not None else ())
        ],
        "products": products,
        "attention": sum(len(r.attention) for r in results),
        "ok": not any(r.failed for r in results),
    }


def _ids(title: str, ids: Sequence[str]) -> None:
    click.echo(f"  {title}: {len(ids)}")
    for device_id in ids[:_SHOWN]:
        click.echo(f"    {device_id}")
    if len(ids) > _SHOWN:
        click.echo(f"    ... and {len(ids) - _SHOWN} more (--json lists them all)")


def _print_text(results: Sequence[ProductSync], *, dry_run: bool, requeued: Requeued | None = None) -> None:
    if requeued is not None:
        click.echo(f"requeued {len(requeued.requeued)} device(s)")
        for e in requeued.requeued[:_SHOWN]:
            click.echo(f"    {e.device_id}  product {e.product}, was {e.state.value}")
        if len(requeued.requeued) > _SHOWN:
            click.echo(f"    ... and {len(requeued.requeued) - _SHOWN} more (--json lists them all)")
        if requeued.already_pending:
            click.echo(f"  {len(requeued.already_pending)} already pending")
    if not results:
        click.echo("nothing queued for sync")
    for r in results:
        counts = ", ".join(f"{n} {s.value}" for s, n in r.counts.items())
        click.echo(f"product {r.product}: {counts}")
        if dry_run:
            pending = r.counts[OutboxState.PENDING]
            click.echo(f"  dry run: would send {pending} device(s) in {r.batches_planned} request(s)")
        if r.drain is not None:
            d = r.drain
            outcomes = ", ".join(f"{n} {o.value}" for o, n in sorted(d.outcomes.items())) or "no answers"
            click.echo(f"  this run: {d.requests} request(s), {d.devices_sent} device(s) sent: {outcomes}")
            if d.placed:
                click.echo(f"  {d.placed} device(s) put into their group / named ({d.place_requests} request(s))")
            if d.stopped and d.fatal is None:  # a fatal error is the command's own error line
                click.echo(f"  stopped: {d.stopped}")
            if d.rejected:
                _ids("refused by the cloud (still pending)", d.rejected)
            if d.unmentioned:
                _ids("not mentioned in the cloud's answer (still pending)", d.unmentioned)
        if r.attention:
            click.echo(f"  need attention: {len(r.attention)}")
            for e in r.attention[:_SHOWN]:
                click.echo(f"    {e.device_id}  {e.state.value}  {e.last_error or ''}".rstrip())
            if len(r.attention) > _SHOWN:
                click.echo(f"    ... and {len(r.attention) - _SHOWN} more (--json lists them all)")
            click.echo("  once fixed, import them again: station sync --requeue ID")
        if r.verify is not None:
            v = r.verify
            verdict = "ok" if v.ok else f"{len(v.missing)} synced here but not listed"
            click.echo(f"  verify: product lists {v.listed}, {v.believed_synced} synced here: {verdict}")
            if v.missing:
                _ids("missing from the product", v.missing)
                click.echo("  import them again: station sync --requeue ID")
            if v.listed_but_pending:
                click.echo(f"  {len(v.listed_but_pending)} pending here are already listed (next sync settles them)")
