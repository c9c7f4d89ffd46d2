"""``fwtool``: the firmware developer's command line. Each command lives in its own module."""

from __future__ import annotations

import click

from firmware_tools.cli.lazy import LazyGroup
from firmware_tools.errors import FirmwareError

COMMANDS = {
    "inspect": "firmware_tools.cli.inspect_cmd:inspect",
    "validate": "firmware_tools.cli.validate_cmd:validate",
    "set-product": "firmware_tools.cli.stamp_cmd:set_product",
    "set-version": "firmware_tools.cli.set_version_cmd:set_version",
    "pack": "firmware_tools.cli.pack_cmd:pack",
    "convert": "firmware_tools.cli.convert_cmd:convert",
    "new": "firmware_tools.cli.new_cmd:new",
    "check-source": "firmware_tools.cli.new_cmd:check_source",
    "keygen": "firmware_tools.cli.keygen_cmd:keygen",
    "release": "firmware_tools.cli.release_cmd:release",
    "verify": "firmware_tools.cli.verify_cmd:verify",
}

EXIT_CODES = (
    "Exit codes: 0 ok; 1 a check failed (validate, verify, check-source, a refused release); "
    "2 unusable input or usage; 130 interrupted."
)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["debug"] = True


class FwtoolGroup(LazyGroup):
    """The lazy group, with ``--debug`` also accepted after the command name (where users type it)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not any(p.name == "debug" for p in command.params):
            command.params.append(
                click.Option(
                    ["--debug"],
                    is_flag=True,
                    expose_value=False,
                    is_eager=True,
                    callback=_set_debug,
                    help="Show the full traceback of an error.",
                )
            )
        return command


@click.group(
    name="fwtool",
    cls=FwtoolGroup,
    lazy_commands=COMMANDS,
    error_types=(FirmwareError,),
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES,
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="benchflash")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Inspect, validate, stamp, pack, convert and sign product firmware."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


__all__ = ["COMMANDS", "main"]
