"""What ``station sync`` and ``station console`` print under ``--json`` when they fail: the error as one
JSON object on stdout (the one-line error still goes to stderr), so a script never parses nothing."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from firmware_tools.errors import FirmwareError
from station.errors import Reason, StationError

F = TypeVar("F", bound=Callable[..., Any])


def error_payload(exc: StationError | FirmwareError) -> dict[str, Any]:
    if isinstance(exc, StationError):
        reason = exc.reason.value
    else:  # a bundle that cannot be read (2) or does not verify (1)
        reason = Reason.BAD_INPUT.value if exc.exit_code == 2 else Reason.REFUSED.value
    return {
        "reason": reason,
        "message": exc.one_line(),
        "hint": exc.hint,
        "exit_code": exc.exit_code,
    }


def echo_error_json(exc: StationError | FirmwareError) -> None:
    click.echo(json.dumps({"ok": False, "error": error_payload(exc)}, indent=2))


def json_errors(func: F) -> F:
    """For a command with an ``as_json`` parameter: on an error, print it as JSON first, then fail as usual."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (StationError, FirmwareError) as exc:
            if kwargs.get("as_json"):
                echo_error_json(exc)
            raise

    return wrapper  # type: ignore[return-value]
