"""``fwtool new`` renders the blinky product template; ``check-source`` compares its macros with a binary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from firmware_tools.errors import FirmwareError

_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _current_platform_names() -> list[str]:
    from firmware_tools.particle.constants import CURRENT_PLATFORMS, PLATFORMS

    return sorted(PLATFORMS[p] for p in CURRENT_PLATFORMS)


def _new_app_platform(text: str) -> int:
    """The platform of a new app: one Particle supports today, named by name or id."""
    from firmware_tools.particle.constants import CURRENT_PLATFORMS, PLATFORMS, platform_id_from

    if text.strip().lower().replace("-", "").startswith("esp32"):
        raise click.BadParameter(
            f"{text!r} is an ESP chip, not a Particle platform: an ESP app is built with ESP-IDF "
            "(idf.py build), then released with `fwtool release 0x10000=build/app.bin ...`",
            param_hint="--platform",
        )
    try:
        platform = platform_id_from(text)
    except FirmwareError as exc:
        raise click.BadParameter(exc.one_line(), param_hint="--platform") from None
    if platform not in CURRENT_PLATFORMS:
        known = PLATFORMS.get(platform, f"id {platform}")
        raise click.BadParameter(
            f"{known} is not a platform Particle supports for new apps today; "
            f"use one of: {', '.join(_current_platform_names())}",
            param_hint="--platform",
        )
    return platform


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--product-id", type=click.IntRange(1, 0xFFFE), required=True, help="The console's product ID.")
@click.option("--product-version", type=click.IntRange(1, 0xFFFE), required=True, help="PRODUCT_VERSION to compile in.")
@click.option(
    "--platform",
    default="p2",
    show_default=True,
    help="A platform Particle supports today: " + ", ".join(_current_platform_names()) + ".",
)
@click.option("--name", help="Project name (default: the folder's name).")
@click.option("--json", "as_json", is_flag=True, help="Print what was created as JSON.")
def new(directory: Path, product_id: int, product_version: int, platform: str, name: str | None, as_json: bool) -> None:
    """Create a product app in DIRECTORY from the blinky template.

    The app targets a current Device OS (4.0 or later): it declares PRODUCT_VERSION, which must match
    the version uploaded to the console, and no PRODUCT_ID (a compile error there; the product comes
    from the console's device list, so import every device before it first connects).
    """
    from firmware_tools.particle import PLATFORMS
    from firmware_tools.project_source import find_product_macros, product_id_block, render_template, template_dir

    platform_id = _new_app_platform(platform)
    platform_name = PLATFORMS[platform_id]
    project_name = name or directory.resolve().name
    if not _NAME.fullmatch(project_name):
        raise FirmwareError(
            f"project name {project_name!r} must be 1-63 letters, digits, '-' or '_'", hint="pass --name"
        )
    block = product_id_block(platform_name, product_id)
    written = render_template(
        template_dir("blinky"),
        directory,
        {
            "name": project_name,
            "product_id": str(product_id),
            "product_version": str(product_version),
            "platform": platform_name,
            "product_id_block": block,
        },
    )
    if as_json:
        record = {
            "directory": str(directory),
            "name": project_name,
            "platform": platform_name,
            "platform_id": platform_id,
            "product_id": product_id,
            "product_version": product_version,
            # Read back from what was written, as check-source would read it.
            "product_id_macro": find_product_macros(directory).product_id is not None,
            "files": [str(p) for p in written],
        }
        click.echo(json.dumps(record, indent=2))
        return
    for path in written:
        click.echo(f"created {path}")


@click.command("check-source")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("binary", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
def check_source(ctx: click.Context, directory: Path, binary: Path, as_json: bool) -> None:
    """Check that PRODUCT_ID / PRODUCT_VERSION in DIRECTORY's source match what BINARY carries.

    Exit 0 when they match, 1 naming each mismatch, 2 when the source declares no PRODUCT_VERSION or
    BINARY is not a Particle module.
    """
    from firmware_tools.cli.common import read_particle_module
    from firmware_tools.project_source import find_product_macros

    macros = find_product_macros(directory)
    _, module = read_particle_module(binary)
    if macros.product_version is None:
        raise FirmwareError(
            "no PRODUCT_VERSION(...) in the source",
            file=str(directory),
            hint="declare it near the top of the app",
        )
    problems: list[str] = []
    if module.suffix.product_version is None:
        problems.append(f"{binary} has no product fields (36-byte suffix): it was built without PRODUCT_VERSION")
    elif module.suffix.product_version != macros.product_version.value:
        v = macros.product_version
        problems.append(
            f"PRODUCT_VERSION({v.value}) at {v.file}:{v.line} but {binary} carries version "
            f"{module.suffix.product_version}"
        )
    # From Device OS 4 on the product id field holds the platform id and the source must have no
    # PRODUCT_ID; before that, compare when the source declares one.
    p = macros.product_id
    if p is not None and module.runs_device_os_4:
        problems.append(
            f"PRODUCT_ID({p.value}) at {p.file}:{p.line}, but {binary} is a Device OS >= 4 app, where PRODUCT_ID "
            "is a compile error: delete it (the product comes from the console's device list)"
        )
    elif p is not None and module.suffix.product_id is not None and module.suffix.product_id != p.value:
        problems.append(
            f"PRODUCT_ID({p.value}) at {p.file}:{p.line} but {binary} carries product id {module.suffix.product_id}"
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "source": str(directory),
                    "binary": str(binary),
                    "source_product_id": macros.product_id.value if macros.product_id else None,
                    "source_product_version": macros.product_version.value,
                    "binary_product_id": module.suffix.product_id,
                    "binary_product_version": module.suffix.product_version,
                    "ok": not problems,
                    "problems": problems,
                },
                indent=2,
            )
        )
    else:
        for problem in problems:
            click.echo(f"MISMATCH: {problem}")
        if not problems:
            click.echo(f"ok: {binary} matches the source (version {macros.product_version.value})")
    if problems:
        ctx.exit(1)
