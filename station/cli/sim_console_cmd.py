"""``station sim console``: serve a simulated Particle cloud console until Ctrl-C."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType

import click

from station.errors import InputError
from station.sim.console import DOCUMENTED_RATE_LIMIT, DOCUMENTED_RATE_WINDOW, RateLimit, SimConsole
from station.sim.console_http import ConsoleServer
from station.sim.console_state import StateFileError


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("console")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="HOST:PORT to serve on (port 0: any free).")
@click.option("--product", "product_id", type=click.IntRange(1, 2**31 - 1), required=True, help="Product ID.")
@click.option("--slug", help="Product slug (default product-ID).")
@click.option("--platform-id", type=int, help="Product platform; devices known to be of another are invalid.")
@click.option(
    "--token",
    envvar="BENCHFLASH_SIM_TOKEN",
    required=True,
    help="The token clients must send (or BENCHFLASH_SIM_TOKEN, which ps cannot show).",
)
@click.option("--state", "state_file", type=click.Path(dir_okay=False), help="Load and save the console's state here.")
@click.option("--claimed-elsewhere", multiple=True, help="A device ID claimed outside the team (repeatable).")
@click.option("--protected", multiple=True, help="A protected device ID (repeatable).")
@click.option(
    "--rate-limit",
    type=click.IntRange(1),
    default=DOCUMENTED_RATE_LIMIT,
    show_default=True,
    help="Requests per window per client; more get 429.",
)
@click.option(
    "--rate-window",
    type=click.FloatRange(min=0.001),
    default=DOCUMENTED_RATE_WINDOW,
    show_default=True,
    help="Rate limit window, seconds.",
)
@click.option("--no-retry-after", is_flag=True, help="Answer 429 without a Retry-After header.")
@click.option("--faults", default="", help="Faults by request number: error-status@3,disconnect@5,stall,corrupt-reply.")
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, help="Seconds added to every answer.")
@click.option("--max-import", type=click.IntRange(1), help="Refuse (400) imports of more IDs than this.")
@click.option("--json", "as_json", is_flag=True, help="Say where it listens as one JSON line (for scripts).")
def sim_console(
    listen: str,
    product_id: int,
    slug: str | None,
    platform_id: int | None,
    token: str,
    state_file: str | None,
    claimed_elsewhere: tuple[str, ...],
    protected: tuple[str, ...],
    rate_limit: int,
    rate_window: float,
    no_retry_after: bool,
    faults: str,
    latency: float,
    max_import: int | None,
    as_json: bool,
) -> None:
    """Serve the Particle Cloud API's product endpoints (device import and listing, firmware, release,
    device update, groups) for the station and other tools.

    \b
    A device reports the product firmware it runs (as a real one does at its handshake) with:
      POST /sim/products/PRODUCT/devices/DEVICE_ID/handshake  {"firmware_version": N}
    """
    host, port = parse_listen(listen)
    try:
        console = SimConsole.with_product(
            product_id,
            token,
            slug=slug,
            platform_id=platform_id,
            state_file=Path(state_file) if state_file else None,
            rate_limit=RateLimit(rate_limit, rate_window, retry_after=not no_retry_after),
            latency=latency,
            max_import=max_import,
        )
        console.inject_spec(faults)
    except (StateFileError, ValueError, OSError) as exc:
        raise InputError(str(exc)) from None
    console.state.claim_elsewhere(claimed_elsewhere)
    console.state.protect(protected)
    try:
        server = ConsoleServer(console, host, port)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    product = console.state.products[product_id]
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C: state saved
    handshake = f"{server.url}/sim/products/{product.id}/devices/DEVICE_ID/handshake"
    if as_json:
        where = {"url": server.url, "product": product.id, "slug": product.slug, "handshake": handshake}
        click.echo(json.dumps(where))
    else:
        click.echo(f"simulated console on {server.url} (product {product.id}, slug {product.slug}); Ctrl-C stops it")
        click.echo(f'a device reports what it runs: POST {handshake} {{"firmware_version": N}}')
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.stop()
        if console.state_file is not None:
            with console.lock:
                console.state.save(console.state_file)
