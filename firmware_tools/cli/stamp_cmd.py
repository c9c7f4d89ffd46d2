"""``fwtool set-product``: write product id and version into a Particle module, re-sealed, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.cli.common import read_particle_module, refuse_overwriting
from firmware_tools.errors import FirmwareError, UnsupportedError


def write_firmware(path: Path, data: bytes, *, container: str, address: int | None) -> None:
    """Write ``data`` as the input was stored: raw, or Intel HEX at ``address``."""
    from firmware_tools.fileio import write_atomic

    if container == "ihex":
        from firmware_tools.ihex import bin_to_hex

        data = bin_to_hex(data, address or 0)
    write_atomic(path, data)


@click.command("set-product")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--product-id",
    type=click.IntRange(0, 0xFFFF),
    help="Product id to write (before Device OS 4; a Device OS >= 4 app keeps its platform id there).",
)
@click.option("--product-version", type=click.IntRange(0, 0xFFFF), required=True, help="Product version to write.")
@click.option(
    "-o", "--output", "--out", "output", type=click.Path(dir_okay=False, path_type=Path), help="Where to write."
)
@click.option("--in-place", is_flag=True, help="Overwrite FILE itself.")
@click.option("--force", is_flag=True, help="Write --product-id into a Device OS >= 4 app's platform id field anyway.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def set_product(
    file: Path,
    product_id: int | None,
    product_version: int,
    output: Path | None,
    in_place: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Set PRODUCT_ID / PRODUCT_VERSION of a Particle module FILE (.bin or Intel HEX) and re-seal it.

    The SHA-256 and CRC-32 are recomputed; the output is written atomically, in FILE's container.
    From Device OS 4.0 on there is no PRODUCT_ID: the field holds the platform id and only the version
    is written (the product comes from the console's device list).
    """
    from firmware_tools.particle import parse_module, stamp_product

    if in_place == (output is not None):
        raise click.UsageError("give exactly one of -o OUT or --in-place")
    target = file if in_place else output
    assert target is not None
    if not in_place:
        refuse_overwriting(file, target)
    firmware, original = read_particle_module(file)
    before = original.suffix
    if original.runs_device_os_4:
        keep = original.platform_id  # what PRODUCT_VERSION(v) compiles to from Device OS 4 on
        if product_id is not None and product_id != keep and not force:
            raise UnsupportedError(
                f"{file} is a Device OS >= 4 app: its product id field holds the platform id {keep}, which the "
                f"device reports; Device OS 4 has no PRODUCT_ID and ignores {product_id} (the product comes from "
                "the console's device list); nothing was written",
                file=str(file),
                hint="leave out --product-id to write only the version, or pass --force to write it anyway",
            )
        if product_id is not None and product_id != keep:
            click.echo(
                f"fwtool: note: --force: writing product id {product_id} over platform id {keep} of a "
                "Device OS >= 4 app; the device reports it, but its product is still the console's device list",
                err=True,
            )
        else:
            product_id = keep
    elif product_id is None:
        raise click.UsageError(
            f"{file} is built for Device OS before 4.0, where an app carries both: give --product-id N"
        )
    stamped = stamp_product(firmware.data, product_id=product_id, product_version=product_version, name=str(file))
    after = parse_module(stamped, name=str(target))
    if (after.suffix.product_id, after.suffix.product_version) != (product_id, product_version) or not after.crc_ok:
        raise FirmwareError("stamped module does not read back as written; nothing was written", file=str(file))
    write_firmware(target, stamped, container=firmware.container, address=firmware.base_address)
    if as_json:
        record = {
            "file": str(file),
            "output": str(target),
            "product_id": product_id,
            "product_version": product_version,
            "previous_product_id": before.product_id,
            "previous_product_version": before.product_version,
            "sha256": after.suffix.sha256.hex(),
            "crc32": f"{after.crc32_stored:08x}",
        }
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(
            f"wrote {target}: product id {product_id}, version {product_version} "
            f"(was {before.product_id}/{before.product_version}), CRC {after.crc32_stored:08x}"
        )
