"""``fwtool pack``: wrap a raw payload into a valid Particle module (prefix, suffix, SHA-256, CRC-32)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.cli.common import platform_option, refuse_overwriting
from firmware_tools.errors import FirmwareError

_FUNCTIONS = (
    "user-part",
    "asset",
    "system-part",
    "bootloader",
    "mono-firmware",
    "radio-stack",
    "ncp-firmware",
)


def _int(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number", param_hint=option) from None


def _dependency(text: str) -> tuple[int, int, int]:
    from firmware_tools.particle.model import ModuleFunction

    parts = text.split(":")
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r} is not FUNCTION:INDEX:VERSION", param_hint="--dependency")
    func_text, index_text, version_text = parts
    key = func_text.strip().upper().replace("-", "_")
    named = key in ModuleFunction.__members__
    function = int(ModuleFunction[key]) if named else (_int(func_text, "--dependency") or 0)
    index, version = _int(index_text, "--dependency"), _int(version_text, "--dependency")
    assert index is not None and version is not None
    for label, value, top in (("function", function, 0xFF), ("index", index, 0xFF), ("version", version, 0xFFFF)):
        if not 0 <= value <= top:
            raise click.BadParameter(f"{text!r}: {label} {value} is outside 0..{top}", param_hint="--dependency")
    return function, index, version


def _function_text(function: object) -> str:
    name = getattr(function, "name", str(function))
    return str(name).lower().replace("_", "-")


def _refuse_a_module(payload: Path, data: bytes) -> None:
    """A payload that is already a sealed module would be wrapped twice: a module no device boots."""
    from firmware_tools.errors import FormatError
    from firmware_tools.particle import parse_module

    try:
        module = parse_module(data, name=str(payload))
    except FormatError:
        return
    if module.crc_ok:
        raise FirmwareError(
            f"is already a Particle module ({_function_text(module.function)} for "
            f"{module.platform_name or module.platform_id}, "
            "CRC valid); packing it again would wrap it twice; nothing was written",
            file=str(payload),
            hint="to change its product fields use `fwtool set-product` or `fwtool set-version`; "
            "pack the raw payload (the linker's .bin before sealing) instead",
        )


@click.command()
@click.argument("payload", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "--out",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Module to write.",
)
@click.option(
    "--platform", required=True, callback=platform_option, help="Particle platform, by name (argon) or id (12)."
)
@click.option(
    "--function",
    "function_name",
    type=click.Choice(_FUNCTIONS),
    default="user-part",
    show_default=True,
    help="Module kind.",
)
@click.option("--index", type=click.IntRange(0, 255), default=1, show_default=True, help="Module index.")
@click.option("--address", help="Start address (default: where the platform links its user part).")
@click.option(
    "--module-version",
    type=click.IntRange(0, 0xFFFF),
    default=6,
    show_default=True,
    help="Prefix module version (a user part's app ABI number, not the product version).",
)
@click.option(
    "--product-id", type=click.IntRange(0, 0xFFFF), default=0xFFFF, show_default="65535 = none", help="PRODUCT_ID."
)
@click.option(
    "--product-version",
    type=click.IntRange(0, 0xFFFF),
    default=0xFFFF,
    show_default="65535 = none",
    help="PRODUCT_VERSION.",
)
@click.option("--no-product-fields", is_flag=True, help="Write the 36-byte suffix without product fields.")
@click.option("--dependency", "dependencies", multiple=True, help="FUNCTION:INDEX:VERSION, e.g. system-part:1:5301.")
@click.option("--asset-name", help="Name of an asset module (with --function asset).")
@click.option("--hex", "as_hex", is_flag=True, help="Write Intel HEX at the module's start address.")
@click.option("--json", "as_json", is_flag=True, help="Print the packed module's facts as JSON.")
def pack(
    payload: Path,
    output: Path,
    platform: int,
    function_name: str,
    index: int,
    address: str | None,
    module_version: int,
    product_id: int,
    product_version: int,
    no_product_fields: bool,
    dependencies: tuple[str, ...],
    asset_name: str | None,
    as_hex: bool,
    as_json: bool,
) -> None:
    """Wrap the raw bytes of PAYLOAD into a module for a platform, and write it atomically to OUTPUT."""
    from firmware_tools.fileio import write_atomic
    from firmware_tools.formats import read_firmware
    from firmware_tools.particle import Dependency, ModuleFunction, pack_module, parse_module
    from firmware_tools.particle.report import module_json

    function = ModuleFunction[function_name.upper().replace("-", "_")]
    if function == ModuleFunction.ASSET and asset_name is None:
        raise click.UsageError("--function asset needs --asset-name")
    deps = [Dependency(*_dependency(text)) for text in dependencies]
    refuse_overwriting(payload, output, how="choose another -o OUTPUT")
    payload_data = read_firmware(payload).data
    _refuse_a_module(payload, payload_data)
    try:
        data = pack_module(
            payload_data,
            platform_id=platform,
            function=function,
            index=index,
            start_address=_int(address, "--address"),
            module_version=module_version,
            product_id=None if no_product_fields else product_id,
            product_version=None if no_product_fields else product_version,
            dependencies=deps,
            asset_name=asset_name,
        )
    except FirmwareError as exc:
        # The library says "the start address"; here it is an option.
        if exc.hint == "pass the start address":
            exc.hint = "pass --address"
            exc.args = (exc.one_line(),)
        raise
    module = parse_module(data, name=str(output))
    if as_hex:
        from firmware_tools.ihex import bin_to_hex

        write_atomic(output, bin_to_hex(data, module.prefix.start_address))
    else:
        write_atomic(output, data)
    if as_json:
        click.echo(json.dumps({"file": str(output), **module_json(module)}, indent=2))
    else:
        click.echo(
            f"wrote {output}: {module.function_name} for {module.platform_name or module.platform_id}, "
            f"{module.size} bytes at {module.prefix.start_address:#x}, CRC {module.crc32_stored:08x}"
        )
