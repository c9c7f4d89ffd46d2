"""``fwtool release``: stamp, validate, order and sign images into one NAME.fwpkg release bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from firmware_tools.errors import UnsupportedError

if TYPE_CHECKING:
    from firmware_tools.bundle import ReleaseInput
    from firmware_tools.keys import SigningKey

_ADDRESS = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)=(.+)", re.DOTALL)


def parse_image_argument(text: str) -> tuple[int | None, Path]:
    """``FILE`` or ``ADDRESS=FILE`` (ADDRESS decimal or 0x hex) -> (address or None, path)."""
    match = _ADDRESS.fullmatch(text)
    if match is None:
        return None, Path(text)
    return int(match.group(1), 0), Path(match.group(2))


def _load_inputs(images: tuple[str, ...]) -> list[ReleaseInput]:
    from firmware_tools.bundle import ReleaseInput
    from firmware_tools.formats import read_firmware

    inputs: list[ReleaseInput] = []
    for text in images:
        address, path = parse_image_argument(text)
        firmware = read_firmware(path)
        address = _check_address_form(firmware.data, address, path, firmware.base_address)
        name = path.name if firmware.container == "bin" else path.with_suffix(".bin").name
        inputs.append(ReleaseInput(name, firmware.data, address))
    return inputs


def _check_address_form(data: bytes, address: int | None, path: Path, hex_address: int | None) -> int | None:
    """The flash address of an image: ESP images need ADDRESS=FILE (or an Intel HEX file, which carries
    it); a Particle module states its own address and is given as FILE."""
    from firmware_tools.cli.common import FORMAT_WORDS
    from firmware_tools.errors import FormatError
    from firmware_tools.formats import detect

    try:
        name = detect(data, name=str(path)).name
    except FormatError:
        return address  # the release names what is wrong with it
    if name in ("esp-image", "esp-partition-table") and hex_address is not None:
        if address is not None and address != hex_address:
            raise click.UsageError(
                f"{path} is Intel HEX placing the image at {hex_address:#x}, but {address:#x}={path} says otherwise"
            )
        return hex_address
    if address is None and name in ("esp-image", "esp-partition-table"):
        example = "0x8000" if name == "esp-partition-table" else "0x10000"
        raise click.UsageError(
            f"{path} is {FORMAT_WORDS[name]}: give the flash address it is written to, as ADDRESS=FILE "
            f"(e.g. {example}={path})"
        )
    if address is not None and name == "particle-module":
        raise click.UsageError(f"{path} is a Particle module, which states its own address: give it as {path}")
    return address


def _passphrase(pem_is_encrypted: bool, where: str, passphrase_env: str | None) -> bytes | None:
    from firmware_tools import keys

    if passphrase_env:
        return keys.read_passphrase_env(passphrase_env)
    if pem_is_encrypted:
        from firmware_tools.cli.common import prompt_secret

        return prompt_secret(f"Passphrase for {where}").encode()
    return None


def _signing_key(
    key_path: Path | None, key_env: str | None, passphrase_env: str | None, allow_insecure: bool
) -> SigningKey:
    """The key from a file (its mode checked first) or from an environment variable holding the PEM."""
    from firmware_tools import keys

    if (key_path is None) == (key_env is None):
        raise click.UsageError("give exactly one of --key NAME.key or --key-env VAR")
    if key_env is not None:
        pem = keys.read_env_secret(key_env, what="PEM private key")
        where = f"${key_env}"
        return keys.parse_signing_key(
            pem, passphrase=_passphrase(keys.is_encrypted_pem(pem), where, passphrase_env), name=where
        )
    assert key_path is not None
    # The mode is checked before a passphrase is asked for, so a refusal costs nothing.
    if not allow_insecure:
        keys.check_private_key_mode(key_path)
    passphrase = _passphrase(keys.is_encrypted_private_key(key_path), str(key_path), passphrase_env)
    return keys.load_signing_key(key_path, passphrase=passphrase, allow_insecure=allow_insecure)


@click.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE... | ADDRESS=IMAGE...")
@click.option("--product-id", type=click.IntRange(1, 0x7FFFFFFF), required=True, help="The product's numeric id.")
@click.option("--product-version", type=click.IntRange(0, 0xFFFF), required=True, help="The release's product version.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), help="NAME.key to sign with.")
@click.option("--key-env", metavar="VAR", help="Sign with the PEM private key held in environment variable VAR.")
@click.option(
    "-o",
    "--out",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Bundle to write (.fwpkg).",
)
@click.option(
    "--security-version",
    type=click.IntRange(0, 0xFFFF),
    default=None,
    help="Security version (like imgtool's security counter): stations never accept a lower one afterwards.",
)
@click.option("--name", "product_name", help="Product name recorded in the manifest.")
@click.option("--notes", default="", help="Release notes recorded in the manifest.")
@click.option("--passphrase-env", metavar="VAR", help="Read the key's passphrase from environment variable VAR.")
@click.option("--allow-insecure-key", is_flag=True, help="Sign even if the key file is readable by group or others.")
@click.option(
    "--partition-table-offset",
    "table_offset",
    type=lambda v: int(v, 0),
    default="0x8000",
    show_default=True,
    metavar="ADDR",
    help="Where the ESP bootloader reads the partition table (its CONFIG_PARTITION_TABLE_OFFSET).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest written, as JSON.")
def release(
    images: tuple[str, ...],
    product_id: int,
    product_version: int,
    security_version: int | None,
    key_path: Path | None,
    key_env: str | None,
    out: Path,
    product_name: str | None,
    notes: str,
    passphrase_env: str | None,
    allow_insecure_key: bool,
    table_offset: int,
    as_json: bool,
) -> None:
    """Make a signed release bundle OUT from IMAGEs.

    Sign with --key NAME.key (mode 0600), or --key-env VAR to keep the key off disk (a CI secret).
    Particle modules are given as FILE: product id and version are stamped into the application
    (or checked, where already set), and modules are ordered as they must be flashed (bootloader,
    radio stack, system parts, application). ESP images are given as ADDRESS=FILE, and must lie
    where the chip boots them (bootloader at the chip's offset, table at 0x8000, apps at app
    partitions of the table). Every image is validated; if any check fails nothing is written and the exit code is 1.
    """
    from firmware_tools.bundle import build_release, write_bundle

    if out.suffix != ".fwpkg":
        raise click.UsageError(f"the bundle name must end in .fwpkg: {out}")
    # The key is loaded before any image is touched, so a refusal costs nothing.
    key = _signing_key(key_path, key_env, passphrase_env, allow_insecure_key)
    if any(out.resolve() == parse_image_argument(t)[1].resolve() for t in images):
        raise UnsupportedError("the bundle would overwrite one of its images", file=str(out))
    result = build_release(
        _load_inputs(images),
        product_id=product_id,
        product_version=product_version,
        key=key,
        product_name=product_name or f"product {product_id}",
        notes=notes,
        security_version=security_version,
        partition_table_offset=table_offset,
    )
    write_bundle(out, result)
    if as_json:
        from firmware_tools.bundle.manifest import manifest_json

        record = {
            "file": str(out),
            "signer_key_id": key.key_id,
            "stamped": [r.entry.name for r in result.images if r.stamped],
            "manifest": manifest_json(result.manifest),
        }
        click.echo(json.dumps(record, indent=2))
        return
    m = result.manifest
    target = m.target.platform_name if m.target.platform_name else m.target.chip
    security = "" if m.security_version is None else f" security version {m.security_version}"
    click.echo(
        f"wrote {out}: product {m.product.id} version {m.product_version}{security} for {target},"
        f" signed by key {key.key_id}"
    )
    for n, r in enumerate(result.images, 1):
        note = " (product id and version stamped)" if r.stamped else ""
        click.echo(f"  {n}. {r.entry.name}: {r.entry.kind.value} at {r.entry.address:#x}, {r.entry.size} bytes{note}")
