"""``fwtool set-version``: write a new version into an ESP app image or a Particle module, re-sealed.

The format is told by content. An ESP image gets its esp_app_desc_t version string; a Particle module
its PRODUCT_VERSION (a number). The output is written atomically; the input is never overwritten
unless ``--in-place`` says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.errors import FirmwareError, FormatError, UnsupportedError
from firmware_tools.formats import FirmwareFormat


@click.command("set-version")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("version")
@click.option(
    "-o",
    "--output",
    "--out",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the result.",
)
@click.option("--in-place", is_flag=True, help="Overwrite FILE itself (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def set_version(file: Path, version: str, output: Path | None, in_place: bool, as_json: bool) -> None:
    """Set VERSION in FILE: the app version string of an ESP image, PRODUCT_VERSION of a Particle module."""
    target = _target(file, output, in_place)
    from firmware_tools import ihex
    from firmware_tools.formats import read_firmware

    firmware = read_firmware(file)
    fmt = _detect(firmware.data, str(file))
    previous: str | int | None
    shown: str | int
    if fmt.name == "esp-image":
        previous, updated = _set_esp(firmware.data, version, str(file))
        shown = version
    elif fmt.name == "particle-module":
        product_version = _product_version(version)
        previous, updated = _set_particle(firmware.data, product_version, str(file))
        shown = product_version
    else:
        raise UnsupportedError(
            f"set-version works on ESP app images and Particle modules, not on a {fmt.name}", file=str(file)
        )
    if firmware.container == "ihex" and firmware.base_address is not None:
        updated = ihex.bin_to_hex(updated, firmware.base_address)

    from firmware_tools.fileio import write_atomic

    write_atomic(target, updated)
    if as_json:
        record = {
            "file": str(file),
            "format": fmt.name,
            "output": str(target),
            "previous_version": previous,
            "version": shown,
        }
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(f"{file}: {fmt.name} version {previous!r} -> {shown!r}, written to {target}")


def _detect(data: bytes, name: str) -> FirmwareFormat:
    from firmware_tools.formats import detect

    try:
        return detect(data, name=name)
    except FormatError:
        from firmware_tools.esp import looks_flash_encrypted

        # Say why an encrypted ESP image is not recognised, rather than just "unknown format".
        if looks_flash_encrypted(data):
            raise UnsupportedError(
                "the file looks like a flash-encrypted ESP image (ciphertext, no image header); "
                "its version cannot be edited",
                file=name,
                hint="set the version on the plaintext image, then encrypt it",
            ) from None
        raise


def _target(file: Path, output: Path | None, in_place: bool) -> Path:
    if in_place and output is not None:
        raise click.UsageError("give either -o OUT or --in-place, not both")
    if in_place:
        return file
    if output is None:
        raise click.UsageError("say where to write the result: -o OUT, or --in-place to overwrite FILE")
    if output.exists() and output.resolve() == file.resolve():
        raise click.UsageError(f"-o {output} is the input file; pass --in-place to overwrite it")
    return output


def _product_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a number; a Particle PRODUCT_VERSION is an integer 0..65535",
            param_hint="VERSION",
        ) from None


def _set_esp(data: bytes, version: str, name: str) -> tuple[str | None, bytes]:
    from firmware_tools.esp import parse_esp_image, set_app_version

    before = parse_esp_image(data, name=name)
    previous = before.app.version if before.app is not None else None
    return previous, set_app_version(data, version, name=name)


def _set_particle(data: bytes, product_version: int, name: str) -> tuple[int | None, bytes]:
    try:
        from firmware_tools.particle import parse_module, stamp_product
    except ImportError as exc:
        raise FirmwareError(f"Particle module support is not available: {exc}", file=name) from exc

    module = parse_module(data, name=name)
    product_id: int | None = None  # keep what the module holds
    if module.product_id_meaning == "unset":
        if not module.runs_device_os_4:
            raise UnsupportedError(
                "the module carries no product id, and before Device OS 4 a product app needs both",
                file=name,
                hint="use 'fwtool set-product --product-id N --product-version V'",
            )
        # What PRODUCT_VERSION(v) compiles to from Device OS 4 on: the platform id in the id field.
        product_id = module.platform_id
    previous = module.suffix.product_version
    return previous, stamp_product(data, product_id=product_id, product_version=product_version, name=name)
