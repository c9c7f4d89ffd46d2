"""What several fwtool commands share: option parsing that names the option, reading a Particle module
with a clear refusal of other formats, never writing over an input, and asking for a secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from firmware_tools.errors import FirmwareError, FormatError, UnsupportedError

if TYPE_CHECKING:
    from firmware_tools.formats import FirmwareFile
    from firmware_tools.particle import ParticleModule


FORMAT_WORDS = {
    "particle-module": "a Particle module",
    "esp-image": "an ESP image",
    "esp-partition-table": "an ESP partition table",
    "release-bundle": "a release bundle",
}


def platform_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: a Particle platform by name (argon) or id (12), as its id."""
    if value is None:
        return None
    from firmware_tools.particle.constants import platform_id_from

    try:
        return platform_id_from(value)
    except FirmwareError as exc:
        raise click.BadParameter(exc.one_line(), ctx=ctx, param=param) from None


def chip_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: an ESP chip in any usual spelling (ESP32-S3, esp32s3), as esptool's key."""
    if value is None:
        return None
    from firmware_tools.esp.chips import chip_by_name, known_chip_names

    chip = chip_by_name(value)
    if chip is None:
        raise click.BadParameter(f"unknown chip {value!r} (known: {known_chip_names()})", ctx=ctx, param=param)
    return chip.key


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting(source: Path, target: Path, *, how: str = "pass --in-place to mean it") -> None:
    """Refuse to write ``target`` when it is the input ``source`` (the same file under any name)."""
    if same_file(source, target):
        raise UnsupportedError("refusing to overwrite the input", file=str(target), hint=how)


def read_particle_module(path: Path) -> tuple[FirmwareFile, ParticleModule]:
    """The file and its parsed module; a file of another known format is refused saying what it is."""
    from firmware_tools.formats import detect, read_firmware
    from firmware_tools.particle import parse_module

    firmware = read_firmware(path)
    try:
        fmt = detect(firmware.data, name=str(path))
    except FormatError:
        fmt = None  # parse_module says best what is wrong with something that is nearly a module
    if fmt is not None and fmt.name != "particle-module":
        raise UnsupportedError(
            f"this is {FORMAT_WORDS.get(fmt.name, fmt.name)}, not a Particle module",
            file=str(path),
            hint="for an ESP app use 'fwtool set-version'" if fmt.name == "esp-image" else None,
        )
    return firmware, parse_module(firmware.data, name=str(path))


def prompt_secret(text: str, *, confirm: bool = False) -> str:
    """Ask for a passphrase on the terminal. Ctrl-C is an interruption (exit 130), end of input an error."""
    try:
        value: str = click.prompt(text, hide_input=True, confirmation_prompt=confirm, err=True)
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise click.UsageError(
            "no passphrase: the input ended before one was typed (use --passphrase-env VAR where no one can type)"
        ) from None
    return value
