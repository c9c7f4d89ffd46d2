"""``station operators`` and ``station audit``: who may do what on this station, and what was done.

PINs are never command-line values (they would stay in shell history): the acting operator's
comes from ``--pin-file``, ``$BENCHFLASH_PIN`` or a hidden prompt; a new operator's from
``--new-pin-file``, ``$BENCHFLASH_NEW_PIN`` or a prompt asked twice.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import click

from station.cli.registry_cmd import db_option, open_registry
from station.errors import InputError
from station.store.when import local_time, parse_since

NEW_PIN_ENV = "BENCHFLASH_NEW_PIN"


def _station_id(value: str | None) -> str:
    return value or socket.gethostname()[:64] or "station"


def _new_pin(name: str, pin_file: Path | None) -> str:
    from station.trace.pins import check_pin, read_pin_file

    if pin_file is not None:
        return check_pin(read_pin_file(pin_file))
    if os.environ.get(NEW_PIN_ENV):
        return check_pin(os.environ[NEW_PIN_ENV])
    if not sys.stdin.isatty():
        raise InputError(f"no PIN for the new operator {name}", hint=f"give --new-pin-file FILE or ${NEW_PIN_ENV}")
    return check_pin(click.prompt(f"New PIN for {name}", hide_input=True, confirmation_prompt=True))


@click.group()
def operators() -> None:
    """Operators who sign in on this station, and their roles (operator, lead, admin)."""


@operators.command("add")
@db_option
@click.argument("name")
@click.option("--role", type=click.Choice(["operator", "lead", "admin"]), default="operator", show_default=True)
@click.option("--as", "acting", metavar="ADMIN", help="The admin adding them (not needed for the very first admin).")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path), help="The acting admin's PIN file.")
@click.option("--new-pin-file", type=click.Path(dir_okay=False, path_type=Path), help="The new operator's PIN file.")
@click.option("--station", "station_id", help="Station ID recorded in the audit log (default: host name).")
def add(
    db: str | None,
    name: str,
    role: str,
    acting: str | None,
    pin_file: Path | None,
    new_pin_file: Path | None,
    station_id: str | None,
) -> None:
    """Add operator NAME with a PIN. The first operator must be an admin; after that, an admin adds them."""
    from station.store.trace import Actor
    from station.trace.pins import hash_pin
    from station.trace.roles import Right
    from station.trace.signin import sign_in_for

    station = _station_id(station_id)
    with open_registry(db, create=True) as registry:
        if registry.trace.has_operators():
            actor = sign_in_for(registry, acting, Right.MANAGE_OPERATORS, station_id=station, pin_file=pin_file)
        else:
            if role != "admin":
                raise InputError(
                    "this station has no operators yet: the first one must be an admin", hint="add it with --role admin"
                )
            actor = Actor(name, "unmanaged", station)
        pin_hash = hash_pin(_new_pin(name, new_pin_file))
        registry.trace.add_operator(name, role, pin_hash, actor=actor)
    click.echo(f"added operator {name} ({role})")


@operators.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def list_operators(db: str | None, as_json: bool) -> None:
    """List operators and their roles (never their PINs)."""
    with open_registry(db) as registry:
        found = registry.trace.operators()
    if as_json:
        rows = [{"name": o.name, "role": o.role, "disabled": o.disabled, "created_at": o.created_at} for o in found]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("no operators: roles are not checked on this station (add an admin to start)")
    for o in found:
        click.echo(
            f"{o.name:<24} {o.role:<9} {'disabled' if o.disabled else 'active':<9} since {local_time(o.created_at)}"
        )


@operators.command("disable")
@db_option
@click.argument("name")
@click.option("--as", "acting", metavar="ADMIN", required=True, help="The admin disabling them.")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path), help="The acting admin's PIN file.")
@click.option("--station", "station_id", help="Station ID recorded in the audit log (default: host name).")
def disable(db: str | None, name: str, acting: str, pin_file: Path | None, station_id: str | None) -> None:
    """Disable operator NAME: they can no longer sign in; their past entries stay."""
    from station.trace.roles import Right
    from station.trace.signin import sign_in_for

    with open_registry(db) as registry:
        actor = sign_in_for(
            registry, acting, Right.MANAGE_OPERATORS, station_id=_station_id(station_id), pin_file=pin_file
        )
        registry.trace.disable_operator(name, actor=actor)
    click.echo(f"disabled operator {name}")


# -- audit ------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@db_option
@click.option("--since", metavar="WHEN", help="Only entries since WHEN: 2h, 1d, 2026-11-26.")
@click.option("--action", metavar="ACTION", help="Only this action (start, stop, retry, scan, allow-downgrade, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of entries.")
@click.pass_context
def audit(ctx: click.Context, db: str | None, since: str | None, action: str | None, as_json: bool) -> None:
    """List the audit log (who, what, when, station, before/after); `station audit verify` checks it."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    if ctx.invoked_subcommand is not None:
        return
    start = None if since is None else parse_since(since, now=time.time())
    with open_registry(db) as registry:
        entries = registry.audit.entries(since=start, action=action)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no audit entries" + (" in that time" if since else ""))
    for e in entries:
        change = ""
        if e.before is not None:
            change += f" before={e.before}"
        if e.after is not None:
            change += f" after={e.after}"
        click.echo(
            f"{e.seq:>6}  {local_time(e.at)}  {e.station_id:<12} {e.actor} ({e.role})  {e.action}"
            f"{'  ' + e.subject if e.subject else ''}{change}"
        )


@audit.command("verify")
@db_option
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The station key (default: station.key next to the registry).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, db: str | None, key_path: Path | None, as_json: bool) -> None:
    """Check the hash chain and every signed head; exit 1 naming the first edited, removed or reordered entry."""
    from station.store.station_key import default_key_path, head_checker, load_public

    db = db or ctx.obj.get("db")
    with open_registry(db) as registry:
        public = load_public(key_path or default_key_path(registry.path))
        report = registry.audit.verify(head_checker(public))
    if as_json:
        problem = report.problem
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "signed_heads": report.heads,
                    "unsigned_entries": report.unsigned,
                    "problem": None
                    if problem is None
                    else {"seq": problem.seq, "kind": problem.kind.value, "message": problem.message},
                },
                indent=2,
            )
        )
    elif report.problem is None:
        note = f"; {report.unsigned} entries after the last signed head" if report.unsigned else ""
        click.echo(f"audit log intact: {report.entries} entries, {report.heads} signed heads{note}")
        if public is None and report.heads:
            click.echo("note: no station key found: heads were checked against the keys they record only", err=True)
    else:
        click.echo(f"audit log NOT intact: {report.problem.message}", err=True)
    if not report.ok:
        ctx.exit(1)
