"""``fwtool keygen``: a signing key pair, NAME.key (PEM, mode 0600) and NAME.pub."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option(
    "-o",
    "--out",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="NAME: writes NAME.key (private) and NAME.pub (public).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["ed25519", "ecdsa-p256"]),
    default="ed25519",
    show_default=True,
    help="Signature algorithm.",
)
@click.option("--passphrase", "ask_passphrase", is_flag=True, help="Prompt for a passphrase that encrypts NAME.key.")
@click.option(
    "--passphrase-env", metavar="VAR", help="Encrypt NAME.key with the passphrase in environment variable VAR."
)
@click.option("--force", is_flag=True, help="Replace existing NAME.key / NAME.pub.")
@click.option("--json", "as_json", is_flag=True, help="Print the key id and paths as JSON.")
def keygen(
    out: Path, algorithm: str, ask_passphrase: bool, passphrase_env: str | None, force: bool, as_json: bool
) -> None:
    """Make a key pair for signing release bundles.

    NAME.key is written with mode 0600 (set before any byte is written) and must stay secret; give
    NAME.pub to the stations that should trust bundles signed with it. The key id is a short hash
    of the public key.
    """
    from firmware_tools import keys

    if ask_passphrase and passphrase_env:
        raise click.UsageError("give --passphrase or --passphrase-env, not both")
    passphrase: bytes | None = None
    if passphrase_env:
        passphrase = keys.read_passphrase_env(passphrase_env)
    elif ask_passphrase:
        from firmware_tools.cli.common import prompt_secret

        text = prompt_secret("Passphrase", confirm=True)
        if not text:
            raise click.UsageError("the passphrase is empty")
        passphrase = text.encode()
    key = keys.generate_key(keys.KeyAlgorithm(algorithm))
    files = keys.write_key_pair(key, out, passphrase=passphrase, overwrite=force)
    if as_json:
        record = {
            "private_key": str(files.private_path),
            "public_key": str(files.public_path),
            "key_id": files.key_id,
            "algorithm": files.algorithm.value,
            "encrypted": passphrase is not None,
        }
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"key id {files.key_id} ({files.algorithm.value})")
    protected = ", passphrase-protected" if passphrase is not None else ""
    click.echo(f"private key: {files.private_path} (mode 0600{protected}; keep it secret, never share it)")
    click.echo(f"public key:  {files.public_path} (give this to the stations that trust your releases)")
