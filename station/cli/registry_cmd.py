"""``station history``, ``station stats`` and ``station export``: what the registry recorded.

Every command here reads the registry named by ``--db``, else ``BENCHFLASH_DB``, else the default
place (``db_option`` and ``open_registry`` are meant for the other station commands too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any, TypeVar

import click

from station.store import AttemptRecord, Registry, Stats, resolve_db_path
from station.store.export import ExportFormat, check_choice, render, write_export
from station.store.paths import DB_ENV
from station.store.when import iso_utc, local_time, parse_since

F = TypeVar("F", bound=Callable[..., Any])


def db_option(func: F) -> F:
    """The ``--db PATH`` option every registry-using command shares."""
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Registry file (default: ${DB_ENV}, else the platform's data folder).",
    )(func)


def open_registry(db: str | None, *, create: bool = False) -> Registry:
    """The registry a command should read; reports refuse a missing file rather than make one."""
    return Registry(resolve_db_path(db), create=create)


def _since(text: str | None) -> float | None:
    return None if text is None else parse_since(text, now=time.time())


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# -- history ----------------------------------------------------------------------------------


def attempt_json(record: AttemptRecord) -> dict[str, Any]:
    ctx = record.context
    return {
        "id": record.id,
        "device_id": record.device_id,
        "platform": record.platform,
        "slot": {"port_path": record.slot.port_path, "label": record.slot.label},
        "station_id": ctx.station_id,
        "operator": ctx.operator,
        "bundle_id": ctx.bundle_id,
        "bundle_sha256": ctx.bundle_sha256,
        "product_id": ctx.product_id,
        "product_version": ctx.product_version,
        "images": [{"name": i.name, "sha256": i.sha256} for i in ctx.images],
        "started_at": iso_utc(record.started_at),
        "ended_at": iso_utc(record.ended_at),
        "seconds": record.seconds,
        "result": record.result.value,
        "phase": record.phase,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "unit_serial": record.unit_serial,
        "unit_data": None if record.unit_data is None else json.loads(record.unit_data),
        "phases": [
            {"phase": p.phase, "started_at": iso_utc(p.started_at), "seconds": p.seconds} for p in record.phases
        ],
    }


def attempt_line(record: AttemptRecord) -> str:
    seconds = "-" if record.seconds is None else f"{record.seconds:.1f}s"
    line = (
        f"{record.id:>7}  {local_time(record.started_at)}  {record.slot.name:<10} "
        f"{record.device_id or '-':<24}  {record.platform or '-':<10} {record.result.value.upper():<11} {seconds:>7}"
    )
    if record.unit_serial is not None:
        line += f"  serial {record.unit_serial}"
    if record.result.value in ("fail", "interrupted"):
        where = f" in {record.phase}" if record.phase else ""
        line += f"  {record.error_code or 'unknown'}{where}"
        if record.error_message:
            line += f": {record.error_message.splitlines()[0][:160] if record.error_message.strip() else ''}"
    return line


def phase_line(record: AttemptRecord) -> str:
    """Where the time of an attempt went: ``identify 1.2s  write 31.0s  verify 4.1s``."""
    return "  ".join(f"{p.phase} {'-' if p.seconds is None else f'{p.seconds:.1f}s'}" for p in record.phases)


@click.command()
@db_option
@click.option("--device", "device_id", metavar="ID", help="Only this device's attempts.")
@click.option("--since", metavar="WHEN", help="Only attempts started since WHEN: 2h, 3d, 2026-11-26, 2026-11-26T08:00.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    default=200,
    show_default=True,
    help="Show the latest N attempts; 0 shows all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of attempts.")
@click.option("--serial", metavar="SN", help="Only the attempts of the board whose label has serial number SN.")
def history(
    db: str | None, device_id: str | None, since: str | None, limit: int, as_json: bool, serial: str | None
) -> None:
    """List recorded attempts, oldest first: slot, device, result, time and the failure reason.

    With --device (or --serial), each attempt also shows the time spent in each phase.
    """
    start = _since(since)
    with open_registry(db) as registry:
        if serial is not None:
            link = registry.trace.device_of(serial)
            if link is None:
                from station.errors import InputError

                raise InputError(f"no board has serial number {serial} in {registry.path}")
            if device_id is not None and device_id.strip().lower() != link.device_id:
                from station.errors import InputError

                raise InputError(f"serial number {serial} belongs to {link.device_id}, not {device_id}")
            device_id = link.device_id
            if not as_json:
                click.echo(f"serial {link.serial}: device {link.device_id}, scanned {local_time(link.scanned_at)}")
        records = registry.history(device_id=device_id, since=start, limit=limit or None)
        total = registry.count_attempts(device_id=device_id, since=start) if limit else len(records)
    if as_json:
        _dump([attempt_json(r) for r in records])
    elif not records:
        click.echo(
            "no attempts recorded" + (" for that device" if device_id else "") + (" in that time" if since else "")
        )
    else:
        click.echo(
            f"{'attempt':>7}  {'started':<19}  {'slot':<10} {'device':<24}  {'platform':<10} {'result':<11} {'time':>7}"
        )
        for record in records:
            click.echo(attempt_line(record))
            if device_id is not None and record.phases:
                click.echo(" " * 9 + phase_line(record))
    if total > len(records):
        click.echo(f"showing the latest {len(records)} of {total} attempts; --limit 0 shows all", err=True)


# -- stats ------------------------------------------------------------------------------------


def stats_json(stats: Stats) -> dict[str, Any]:
    data = asdict(stats)
    for key in ("since", "first_started_at", "last_event_at"):
        data[key] = iso_utc(data[key])
    data["failures_by_reason"] = {r.code: r.count for r in stats.failures_by_reason}
    return data


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def stats_text(stats: Stats, where: str) -> Iterator[str]:
    window = "all time" if stats.since is None else f"since {local_time(stats.since)}"
    yield f"registry {where} ({window})"
    yield (
        f"attempts   {stats.attempts:>9}   passed {stats.attempts_passed}   failed {stats.attempts_failed}"
        f"   interrupted {stats.attempts_interrupted}   running {stats.attempts_running}"
    )
    yield (
        f"devices    {stats.devices_seen:>9}   passed {stats.devices_passed}"
        f"   failing (not passed) {stats.devices_failing}"
    )
    yield f"first-pass yield  {_percent(stats.first_pass_yield)}"
    rate = "-" if stats.devices_per_hour is None else f"{stats.devices_per_hour:.1f}"
    yield f"devices per hour  {rate}"
    if stats.failures_by_reason:
        yield "failures by reason"
        for reason in stats.failures_by_reason:
            yield f"  {reason.code:<20} {reason.count:>9}"
    if stats.by_line:
        yield "by station and product"
        for line in stats.by_line:
            product = "-" if line.product_id is None else str(line.product_id)
            version = "" if line.product_version is None else f" v{line.product_version}"
            decided = line.passed + line.failed
            share = None if not decided else line.passed / decided
            yield (
                f"  {line.station_id:<16} product {product}{version:<6} attempts {line.attempts:>8}"
                f"  passed {line.passed:>8}  failed {line.failed:>7}  pass rate {_percent(share)}"
            )


@click.command()
@db_option
@click.option("--since", metavar="WHEN", help="Count only attempts started since WHEN (2h, 3d, an ISO date).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def stats(db: str | None, since: str | None, as_json: bool) -> None:
    """Passed, failed, first-pass yield, devices per hour, failures by reason, per station and product.

    First-pass yield: of the devices first tested in the window, the share whose first finished
    attempt passed (an interrupted attempt is the station's, not the device's, and does not count).
    Devices per hour: devices that passed, over the time from the window's first attempt to its
    last event.
    """
    start = _since(since)
    with open_registry(db) as registry:
        figures = registry.stats(since=start)
        where = str(registry.path)
    if as_json:
        _dump(stats_json(figures))
    else:
        for line in stats_text(figures, where):
            click.echo(line)


# -- export -----------------------------------------------------------------------------------


@click.command()
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ExportFormat]),
    default=ExportFormat.TXT.value,
    show_default=True,
    help="txt: the console's import file (passed device IDs, one per line); csv or json: one row per device.",
)
@click.option("--all", "include_all", is_flag=True, help="Every device with its last result, not only passed ones.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), help="Write to FILE (atomically).")
def export(db: str | None, fmt: str, include_all: bool, output: str | None) -> None:
    """Export recorded devices; by default the passed ones, each once, as the console's import file."""
    chosen = ExportFormat(fmt)
    check_choice(chosen, include_all)
    with open_registry(db) as registry:
        if output is None or output == "-":
            for piece in render(registry, chosen, include_all=include_all):
                click.echo(piece, nl=False)
        else:
            count = write_export(registry, chosen, output, include_all=include_all)
            what = "devices" if include_all else "passed devices"
            click.echo(f"wrote {count} {what} to {output}", err=True)
