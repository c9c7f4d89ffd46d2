"""``station console``: the console's rollout flow from the command line, on the sync's client.

upload (version read from the binary), firmware, lock / unlock (a test device), release (only what
already runs on a device), devices. Token handling, HTTPS and exit codes as ``station sync``: 0 ok,
1 a check failed or the cloud refused / could not be reached, 2 bad input.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from station.cli.acting import acting_options, pop_acting, signed_in
from station.cli.cloud_output import json_errors
from station.cloud.backoff import Backoff
from station.cloud.client import ParticleCloud
from station.cloud.config import CloudConfig
from station.cloud.errors import CloudConfigError, CloudRetryable
from station.cloud.models import ProductDevice, ProductFirmware
from station.cloud.rollout import (
    DEFAULT_MAX_FAILURES,
    Retry,
    all_devices,
    firmware_from_bundle,
    lock_device,
    release_firmware,
    unlock_device,
    upload_firmware,
)
from station.cloud.token import load_token
from station.errors import InputError
from station.store import Registry
from station.store.audit import AuditAction
from station.store.trace import Actor
from station.trace.roles import Right

F = TypeVar("F", bound=Callable[..., Any])
DEVICE_ID = re.compile(r"[0-9a-f]{24}")


@dataclass(frozen=True)
class _Cloud:
    """What every subcommand needs: the configuration and the retry policy."""

    config: CloudConfig
    retry: Retry
    trusted: tuple[Path, ...]

    def client(self) -> ParticleCloud:
        return ParticleCloud.from_config(self.config, load_token(self.config))


def cloud_options(func: F) -> F:
    """--product, --profile, --base-url, --token-env, --token-file, --max-failures."""
    options = (
        click.option("--product", help="Product ID or slug (default: the profile's [cloud] product)."),
        click.option("--profile", type=click.Path(dir_okay=False, exists=True), help="Take [cloud] from this profile."),
        click.option("--base-url", help="Cloud API base URL (default https://api.particle.io)."),
        click.option("--token-env", help="Environment variable holding the token (default PARTICLE_ACCESS_TOKEN)."),
        click.option(
            "--token-file", type=click.Path(dir_okay=False), help="Read the token from this file (mode 0600)."
        ),
        click.option(
            "--max-failures",
            type=click.IntRange(1, 1000),
            default=DEFAULT_MAX_FAILURES,
            show_default=True,
            help="Failed requests in a row (429, 5xx, timeouts) before giving up.",
        ),
    )
    for option in reversed(options):
        func = option(func)
    return func


def _setup(
    product: str | None,
    profile: str | None,
    base_url: str | None,
    token_env: str | None,
    token_file: str | None,
    max_failures: int,
) -> _Cloud:
    trusted: tuple[Path, ...] = ()
    if profile is not None:
        from station.profile import load_profile

        path = Path(profile)
        loaded = load_profile(path)
        trusted = loaded.trusted_keys
        if loaded.cloud is None:
            if not product:
                raise CloudConfigError(f"{path}: the profile has no [cloud] section", hint="add one, or pass --product")
            config = CloudConfig(product=product)
        else:
            config = CloudConfig.from_mapping(loaded.cloud, where=f"{path} [cloud]", base_dir=path.parent)
    elif product:
        config = CloudConfig(product=product)
    else:
        raise InputError("no product: pass --product ID (or --profile with a [cloud] section)")
    config = config.with_overrides(
        product=product,
        base_url=base_url,
        token_env=token_env,
        token_file=Path(token_file).expanduser() if token_file else None,
    )
    obj = click.get_current_context().find_root().obj or {}
    sleep: Callable[[float], None] = obj.get("sleep", time.sleep)

    def note_wait(exc: CloudRetryable, wait: float) -> None:
        click.echo(f"{exc}; retrying in {wait:.1f} s", err=True)

    retry = Retry(Backoff(), max_failures=max_failures, sleep=sleep, on_wait=note_wait)
    return _Cloud(config, retry, trusted)


def _audit(registry: Registry, actor: Actor, action: AuditAction, subject: str, after: dict[str, Any]) -> None:
    """Record what the console was asked to do, once it answered."""
    registry.audit.append(
        action, station_id=actor.station_id, actor=actor.name, role=actor.role, subject=subject, after=after
    )


def _emit(as_json: bool, payload: dict[str, Any], lines: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        for line in lines:
            click.echo(line)


def _device_json(d: ProductDevice) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "firmware_version": d.firmware_version,
        "locked_version": d.desired_firmware_version,
        "online": d.online,
        "development": d.development,
        "groups": list(d.groups),
    }


def _device_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A device ID as the console shows it: 24 hex digits (upper case accepted, sent lower case)."""
    text = value.strip().lower()
    if not DEVICE_ID.fullmatch(text):
        raise InputError(
            f"{value[:80]!r} is not a device ID",
            hint="a Particle device ID is 24 hex digits, as `station console devices` lists them",
        )
    return text


@click.group("console")
def console() -> None:
    """Roll out product firmware: upload it, lock test devices, release what already runs."""


@console.command("upload")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Public key the bundle must be signed with (repeatable; default: the profile's trusted_keys).",
)
@click.option("--title", help="Firmware title in the console (default: '<product name> v<version>').")
@click.option("--description", help="Firmware description (default: the bundle's notes).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@acting_options
@json_errors
def upload(
    bundle: str, trusted: tuple[str, ...], title: str | None, description: str | None, as_json: bool, **cloud: Any
) -> None:
    """Upload the bundle's application as product firmware; the version is read from the binary."""
    from firmware_tools.bundle import open_verified_bundle

    acting = pop_acting(cloud)
    setup = _setup(**cloud)
    keys = [Path(k) for k in trusted] or list(setup.trusted)
    if not keys:
        raise InputError("no trusted key: pass --trusted KEY.pub (the bundle must verify before it is uploaded)")
    verified = open_verified_bundle(bundle, keys)
    fw = firmware_from_bundle(verified, title=title, description=description)
    product = setup.config.product
    with signed_in(Right.UPLOAD, **acting) as (registry, actor), setup.client() as client:
        outcome = upload_firmware(client, product, fw, setup.retry)
        _audit(
            registry,
            actor,
            AuditAction.CONSOLE_UPLOAD,
            f"product {product}",
            {"version": fw.version, "sha256": fw.sha256, "uploaded": outcome.uploaded},
        )
    if outcome.uploaded:
        headline = f"uploaded {fw.image_name} as firmware version {fw.version} of product {product} ({fw.title!r})"
    else:
        headline = f"product {product} already has firmware version {fw.version} with these exact bytes: nothing to do"
    lines = [headline, f"  {len(fw.binary)} bytes, sha256 {fw.sha256}", *(f"  note: {n}" for n in outcome.notes)]
    if outcome.uploaded:
        lines.append(
            f"  next: lock a test device to it: station console lock DEVICE_ID {fw.version} --product {product}"
        )
    payload = {
        "product": product,
        "version": fw.version,
        "uploaded": outcome.uploaded,
        "title": fw.title,
        "image": fw.image_name,
        "size": len(fw.binary),
        "sha256": fw.sha256,
        "notes": list(outcome.notes),
    }
    _emit(as_json, payload, lines)


def _firmware_row(f: ProductFirmware) -> str:
    released = "product" if f.current else ""
    if f.groups:
        released = ", ".join(filter(None, [released, "groups " + ",".join(f.groups)]))
    devices = "?" if f.device_count is None else str(f.device_count)
    size = "?" if f.size is None else str(f.size)
    return f"{f.version:>7}  {released or '-':<24}  {devices:>7}  {size:>8}  {f.title or ''}"


@console.command("firmware")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@json_errors
def firmware(as_json: bool, **cloud: Any) -> None:
    """The product's firmware versions: which is released, and how many devices run each."""
    setup = _setup(**cloud)
    product = setup.config.product
    with setup.client() as client:
        versions = setup.retry(lambda: client.list_firmware(product))
    payload = {
        "product": product,
        "firmware": [
            {
                "version": f.version,
                "title": f.title,
                "released": f.released,
                "product_default": f.current,
                "groups": list(f.groups),
                "device_count": f.device_count,
                "size": f.size,
                "uploaded_at": f.uploaded_at,
            }
            for f in versions
        ],
    }
    lines = [f"product {product}: {len(versions)} firmware version(s)"]
    if versions:
        lines.append(f"{'VERSION':>7}  {'RELEASED':<24}  {'DEVICES':>7}  {'BYTES':>8}  TITLE")
        lines += [_firmware_row(f) for f in versions]
    _emit(as_json, payload, lines)


@console.command("lock")
@click.argument("device_id", callback=_device_id)
@click.argument("version", type=click.IntRange(1, 0xFFFE))
@click.option(
    "--now/--on-reset",
    "flash",
    default=True,
    show_default=True,
    help="Flash it now if the device is online, or let it update at its next reset / handshake.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@acting_options
@json_errors
def lock(device_id: str, version: int, flash: bool, as_json: bool, **cloud: Any) -> None:
    """Lock a test device to an uploaded firmware version (and flash it), as the device page does."""
    acting = pop_acting(cloud)
    setup = _setup(**cloud)
    product = setup.config.product
    with signed_in(Right.LOCK, **acting) as (registry, actor), setup.client() as client:
        device = lock_device(client, product, device_id, version, flash=flash, retry=setup.retry)
        _audit(registry, actor, AuditAction.LOCK, device_id, {"product": product, "version": version, "flash": flash})
    if device.firmware_version == version:
        when = "it already runs it"
    elif not flash:
        when = "it updates at its next reset"
    elif device.online:
        when = "the cloud flashes it now"
    else:
        when = "it is offline: it gets it when it next connects"
    lines = [
        f"device {device.id} locked to firmware version {version} of product {product}: {when}",
        f"  it runs {_running(device)}; release needs it (or another device) running version {version}",
    ]
    _emit(as_json, {"product": product, "locked_version": version, "flash": flash, **_device_json(device)}, lines)


@console.command("unlock")
@click.argument("device_id", callback=_device_id)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@acting_options
@json_errors
def unlock(device_id: str, as_json: bool, **cloud: Any) -> None:
    """Unlock a device: it follows the product's releases again (which may send it an update)."""
    acting = pop_acting(cloud)
    setup = _setup(**cloud)
    product = setup.config.product
    with signed_in(Right.UNLOCK, **acting) as (registry, actor), setup.client() as client:
        device = unlock_device(client, product, device_id, setup.retry)
        _audit(registry, actor, AuditAction.UNLOCK, device_id, {"product": product, "locked": False})
    lines = [f"device {device.id} unlocked: it follows product {product}'s releases again"]
    _emit(as_json, {"product": product, **_device_json(device), "locked_version": None}, lines)


def _running(device: ProductDevice) -> str:
    return "no product firmware yet" if device.firmware_version is None else f"version {device.firmware_version}"


@console.command("release")
@click.argument("version", type=click.IntRange(1, 0xFFFE))
@click.option("--group", "groups", multiple=True, help="Release to this device group only (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@acting_options
@json_errors
def release(version: int, groups: tuple[str, ...], as_json: bool, **cloud: Any) -> None:
    """Release a version, only when at least one device of the product runs it."""
    acting = pop_acting(cloud)
    setup = _setup(**cloud)
    product = setup.config.product
    with signed_in(Right.RELEASE, **acting) as (registry, actor), setup.client() as client:
        outcome = release_firmware(client, product, version, setup.retry, groups=groups)
        _audit(registry, actor, AuditAction.RELEASE, f"product {product}", {"version": version, "groups": list(groups)})
    target = f"group(s) {', '.join(outcome.groups)}" if outcome.groups else "the whole product (default)"
    lines = [
        f"released firmware version {version} of product {product} to {target}",
        f"  running it: {len(outcome.running)} device(s)",
    ]
    if outcome.waiting:
        lines.append(f"  locked to it but not running it yet: {len(outcome.waiting)}")
        lines += [f"    {d.id}" + ("" if d.online else "  (offline)") for d in outcome.waiting]
    payload = {
        "product": product,
        "version": version,
        "released": True,
        "groups": list(outcome.groups),
        "product_default": not outcome.groups,
        "running": [d.id for d in outcome.running],
        "locked_not_running": [d.id for d in outcome.waiting],
    }
    _emit(as_json, payload, lines)


@console.command("devices")
@click.option("--group", "groups", multiple=True, help="Only devices in this group (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@cloud_options
@json_errors
def devices(groups: tuple[str, ...], as_json: bool, **cloud: Any) -> None:
    """The product's devices: firmware version, locked version, online, groups."""
    from station.cloud.groups import normalise_group_name

    setup = _setup(**cloud)
    product = setup.config.product
    names = [normalise_group_name(g, where="--group") for g in groups]
    with setup.client() as client:
        found = all_devices(client, product, setup.retry, groups=names or None)
    payload = {"product": product, "groups": names, "devices": [_device_json(d) for d in found]}
    lines = [f"product {product}: {len(found)} device(s)" + (f" in {', '.join(names)}" if names else "")]
    if found:
        lines.append(f"{'DEVICE ID':<24}  {'NAME':<16}  {'RUNS':>5}  {'LOCKED':>6}  {'ONLINE':<6}  GROUPS")
        for d in found:
            runs = "-" if d.firmware_version is None else str(d.firmware_version)
            locked = "-" if d.desired_firmware_version is None else str(d.desired_firmware_version)
            online = "yes" if d.online else "no"
            in_groups = ",".join(d.groups) or "-"
            lines.append(f"{d.id:<24}  {(d.name or '-')[:16]:<16}  {runs:>5}  {locked:>6}  {online:<6}  {in_groups}")
    _emit(as_json, payload, lines)
