"""A click group whose commands are imported only when run, and that turns known errors into one line.

Shared by ``fwtool`` and ``station`` so both have the same exit codes: 0 ok, 1 a check or a device
failed, 2 unusable input or usage, 130 interrupted. No traceback unless ``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from typing import Any

import click


class LazyGroup(click.Group):
    """``commands`` maps a command name to ``"package.module:attribute"``."""

    def __init__(
        self,
        *args: Any,
        lazy_commands: dict[str, str] | None = None,
        error_types: tuple[type[Exception], ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self.error_types = error_types

    def list_commands(self, ctx: click.Context) -> list[str]:
        built = {name for name, target in self.lazy_commands.items() if _module_exists(target)}
        return sorted(set(super().list_commands(ctx)) | built)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module_name}:{attr} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
            ctx.exit(130)
        except self.error_types as exc:
            code = int(getattr(exc, "exit_code", 2))
            if _debug(ctx):
                # The traceback for the developer, and still the exit code scripts rely on.
                traceback.print_exc()
            click.echo(f"{ctx.find_root().info_name}: error: {exc}", err=True)
            ctx.exit(code)


def _module_exists(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.split(":")[0]) is not None
    except ModuleNotFoundError:
        return False


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or "--debug" in sys.argv
