"""Commands that change what goes into the console sign in for the right they need and leave an audit entry.

``acting_options`` adds ``--operator NAME``, ``--pin-file FILE`` and ``--audit-db PATH`` (the
registry holding the operators and the audit log; default as ``--db``: $BENCHFLASH_DB, else the
data folder). ``signed_in`` opens it, signs in and checks the right; the caller appends its entry.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from station.store import Registry, resolve_db_path
from station.store.trace import Actor
from station.trace.roles import Right
from station.trace.signin import sign_in_for

F = TypeVar("F", bound=Callable[..., Any])


def acting_options(func: F) -> F:
    options = (
        click.option("--operator", "acting_operator", metavar="NAME", help="Who acts (signs in with a PIN)."),
        click.option(
            "--pin-file",
            "acting_pin_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The operator's PIN file (mode 0600); else $BENCHFLASH_PIN, else a prompt.",
        ),
        click.option(
            "--audit-db",
            "acting_db",
            type=click.Path(dir_okay=False),
            help="Registry with the operators and the audit log (default: $BENCHFLASH_DB, else the data folder).",
        ),
    )
    for option in reversed(options):
        func = option(func)
    return func


def station_name() -> str:
    return socket.gethostname()[:64] or "station"


@contextlib.contextmanager
def signed_in(
    right: Right, *, operator: str | None, pin_file: Path | None, db: str | None, station_id: str | None = None
) -> Iterator[tuple[Registry, Actor]]:
    with Registry(resolve_db_path(db)) as registry:
        actor = sign_in_for(registry, operator, right, station_id=station_id or station_name(), pin_file=pin_file)
        yield registry, actor


def pop_acting(cloud: dict[str, Any]) -> dict[str, Any]:
    """Take the acting options out of a command's ``**cloud`` keyword arguments."""
    return {
        "operator": cloud.pop("acting_operator", None),
        "pin_file": cloud.pop("acting_pin_file", None),
        "db": cloud.pop("acting_db", None),
    }
