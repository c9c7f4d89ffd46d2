"""``fwtool verify``: exit 0 only when a bundle is signed by a trusted key and every image checks out."""

from __future__ import annotations

import json
from pathlib import Path

import click

from firmware_tools.errors import FirmwareError

_MARK = {True: "ok  ", False: "FAIL", None: "n/a "}


class _VerifyCommand(click.Command):
    """Usage as it is parsed: the keys follow --trusted (click alone would print `BUNDLE [KEY.pub]...`,
    which reads as if the keys could be given without it)."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["[OPTIONS]", "BUNDLE", "--trusted", "KEY.pub", "[KEY.pub]..."]


@click.command(cls=_VerifyCommand)
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
# `--trusted a.pub b.pub` leaves b.pub as an argument: it is taken as a trusted key too.
@click.argument("more_trusted", nargs=-1, type=click.Path(dir_okay=False, path_type=Path), metavar="[KEY.pub]...")
@click.option(
    "-t",
    "--trusted",
    "trusted",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A trusted public key (NAME.pub): --trusted a.pub b.pub, or --trusted a.pub --trusted b.pub.",
)
@click.option("--json", "as_json", is_flag=True, help="Print every check as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="List every check, not only the failed ones.")
@click.pass_context
def verify(
    ctx: click.Context,
    bundle: Path,
    more_trusted: tuple[Path, ...],
    trusted: tuple[Path, ...],
    as_json: bool,
    verbose: bool,
) -> None:
    """Verify release BUNDLE against trusted public keys.

    Exit 0 only when the manifest's signature verifies with a trusted key, every member's hash
    matches the manifest, nothing unlisted is in the bundle, and each image's own metadata matches
    the manifest. Exit 1 naming each failed check; exit 2 when BUNDLE is not a bundle at all.
    """
    from firmware_tools.bundle import load_public_key, verify_bundle

    if _is_pem(bundle):
        raise click.UsageError(
            f"{bundle} is a key, not a bundle: the bundle comes first (fwtool verify BUNDLE --trusted KEY.pub...)"
        )
    try:
        keys = [load_public_key(p) for p in (*trusted, *more_trusted)]
        result = verify_bundle(bundle, keys)
    except FirmwareError as exc:
        if not as_json:
            raise
        exc.with_file(str(bundle))
        click.echo(json.dumps({"file": str(bundle), "ok": False, "error": exc.one_line()}, indent=2))
        ctx.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        shown = result.checks if verbose else result.failed
        for check in shown:
            click.echo(f"{_MARK[check.ok]} {check.name}: {check.reason}")
        if result.ok and result.manifest is not None:
            m = result.manifest
            signer = result.signer.key_id if result.signer is not None else "?"
            security = "" if m.security_version is None else f" (security version {m.security_version})"
            click.echo(
                f"{bundle}: verified, signed by trusted key {signer}: product {m.product.id} "
                f"version {m.product_version}{security}, {len(m.images)} image(s)"
            )
        else:
            click.echo(f"{bundle}: FAILED verification ({len(result.failed)} check(s) failed)", err=True)
    if not result.ok:
        ctx.exit(1)


def _is_pem(path: Path) -> bool:
    from firmware_tools.fileio import is_regular_file

    if not is_regular_file(path):
        return False  # never open a FIFO to peek; verify_bundle refuses it
    try:
        with path.open("rb") as fh:
            return fh.read(11) == b"-----BEGIN "
    except OSError:
        return False  # verify_bundle reports why it cannot be read
