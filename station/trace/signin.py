"""Sign in: a name and a PIN checked against the registry's operators; the result acts and is audited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from station.errors import InputError, Reason, StationError
from station.store import Registry
from station.store.trace import Actor
from station.trace.pins import obtain_pin, pin_matches
from station.trace.roles import UNMANAGED, Right, require


class SignInFailed(StationError):
    exit_code = 2
    reason = Reason.PERMISSION


def sign_in(
    registry: Registry,
    name: str | None,
    *,
    station_id: str,
    pin_file: Path | None = None,
    read_pin: Callable[[str, Path | None], str] = obtain_pin,
) -> Actor:
    """Who acts. With no operators registered, anyone is ``unmanaged`` under the name given (or
    ``unknown``); otherwise the name must be an enabled operator and the PIN must match."""
    trace = registry.trace
    if not trace.has_operators():
        return Actor((name or "unknown").strip() or "unknown", UNMANAGED, station_id)
    if not name:
        raise InputError(
            "this station has operators: sign in with --operator NAME", hint="see `station operators list`"
        )
    operator = trace.operator(name)
    # One message for a wrong name and a wrong PIN: it must not tell which names exist.
    pin = read_pin(name, pin_file)
    if operator is None or operator.disabled or not pin_matches(operator.pin_hash, pin):
        raise SignInFailed(f"sign-in refused for {name!r}: unknown or disabled operator, or wrong PIN")
    return Actor(operator.name, operator.role, station_id)


def sign_in_for(
    registry: Registry,
    name: str | None,
    right: Right,
    *,
    station_id: str,
    pin_file: Path | None = None,
    read_pin: Callable[[str, Path | None], str] = obtain_pin,
) -> Actor:
    """Sign in and check the right in one step; AccessDenied names the role the right needs."""
    actor = sign_in(registry, name, station_id=station_id, pin_file=pin_file, read_pin=read_pin)
    require(actor.name, actor.role, right)
    return actor
