"""The console's rollout flow without its traps: upload product firmware with the version read from
the binary, lock test devices to it, and release only a version that already runs on a device.

Every check that can be made before a request is made here, so a refusal names the cause in the
station's words; idempotent requests are retried with backoff on 429 and transient failures. An
upload is retried only after checking that the previous attempt did not land.
"""

from __future__ import annotations

import hashlib
import logging
import random as _random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from firmware_tools.bundle import ImageKind, VerifiedBundle
from firmware_tools.errors import FirmwareError
from firmware_tools.particle import parse_module
from station.cloud.backoff import Backoff
from station.cloud.client import ParticleCloud
from station.cloud.errors import CloudNotFound, CloudRateLimited, CloudRetryable
from station.cloud.groups import normalise_group_name
from station.cloud.models import DevicePage, ProductDevice, ProductFirmware, ProductInfo
from station.errors import InputError, Reason, StationError

log = logging.getLogger("station.cloud.rollout")

T = TypeVar("T")
DEFAULT_MAX_FAILURES = 8
# Shown in refusals: enough devices to act on, not a screenful.
_NAMED = 10


class RolloutRefused(StationError):
    """A rollout step the station will not take (a check failed): exit 1."""

    exit_code = 1
    reason = Reason.REFUSED


# -- what is uploaded ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareToUpload:
    """The user part of a verified bundle, with what its own bytes say."""

    source: str  # the bundle
    image_name: str
    binary: bytes
    version: int  # PRODUCT_VERSION from the module suffix, never typed
    platform_id: int
    product_field: str  # what the suffix's product id holds: "product-id" or "platform-id"
    product_id_field: int | None  # the suffix's product id (a platform id on Device OS >= 4)
    bundle_product_id: int  # the product the signed manifest names
    title: str
    description: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.binary).hexdigest()


def firmware_from_bundle(
    bundle: VerifiedBundle, *, title: str | None = None, description: str | None = None
) -> FirmwareToUpload:
    """The one Particle application (user part) of ``bundle``, its version read from its suffix."""
    apps = [i for i in bundle.images if i.kind is ImageKind.USER_PART]
    where = bundle.source
    if not apps:
        kinds = ", ".join(sorted({i.kind.value for i in bundle.images})) or "none"
        raise InputError(
            f"{where}: the bundle holds no Particle application (user part) to upload (images: {kinds})",
            hint="product firmware is the user part; ESP bundles cannot be product firmware",
        )
    if len(apps) > 1:
        raise InputError(f"{where}: the bundle holds {len(apps)} user parts; product firmware is one binary")
    app = apps[0]
    try:
        module = parse_module(app.data, name=app.name)
    except FirmwareError as exc:
        raise InputError(f"{where}: {app.name}: {exc.message}") from None
    meaning = module.product_id_meaning
    version = module.suffix.product_version
    if meaning in ("absent", "unset") or version is None:
        raise InputError(
            f"{where}: {app.name} has no PRODUCT_VERSION compiled in",
            hint="build it with PRODUCT_VERSION(n), or stamp it: fwtool stamp --product-version N",
        )
    m = bundle.manifest
    return FirmwareToUpload(
        source=where,
        image_name=app.name,
        binary=app.data,
        version=version,
        platform_id=module.platform_id,
        product_field=meaning,
        product_id_field=module.suffix.product_id,
        bundle_product_id=m.product.id,
        title=title or f"{m.product.name} v{version}",
        description=description if description is not None else m.notes,
    )


def check_product(fw: FirmwareToUpload, product: ProductInfo) -> list[str]:
    """Refuse a binary made for another product (or platform); return notes worth showing."""
    notes: list[str] = []
    if fw.product_field == "product-id":
        if fw.product_id_field != product.id:
            raise RolloutRefused(
                f"{fw.image_name} was compiled with PRODUCT_ID({fw.product_id_field}), "
                f"not for product {product.id}; refusing to upload it there",
                hint="upload it to its own product, or rebuild / stamp it for this one",
            )
    else:
        # Device OS >= 4 compiles the platform ID where the product ID was: one binary may serve
        # several products, so only the platform can be checked against the product.
        if product.platform_id is not None and fw.platform_id != product.platform_id:
            raise RolloutRefused(
                f"{fw.image_name} is for platform {fw.platform_id}; product {product.id} is for platform "
                f"{product.platform_id}",
                hint="upload it to a product of its platform",
            )
        if fw.bundle_product_id != product.id:
            notes.append(
                f"the bundle was released for product {fw.bundle_product_id}; the binary (Device OS >= 4) names "
                f"no product, so it may serve product {product.id} too"
            )
    return notes


# -- retrying ------------------------------------------------------------------------------------


@dataclass
class Retry:
    """Runs a request again after 429s and transient failures, with backoff, up to ``max_failures``."""

    backoff: Backoff
    max_failures: int = DEFAULT_MAX_FAILURES
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random
    on_wait: Callable[[CloudRetryable, float], None] | None = None

    def __call__(self, fn: Callable[[], T], *, before_retry: Callable[[], T | None] | None = None) -> T:
        """``before_retry`` (for requests that are not idempotent) may return the result a lost
        earlier attempt already produced; None means send again."""
        failures = 0
        while True:
            acted_maybe = False
            try:
                return fn()
            except CloudRetryable as exc:
                # A 429 is answered before anything is done; a 5xx, timeout or dropped line may hide
                # a request that took effect.
                acted_maybe = not isinstance(exc, CloudRateLimited)
                failures += 1
                if failures >= self.max_failures:
                    raise
                wait = self.backoff.delay(
                    failures - 1, retry_after=getattr(exc, "retry_after", None), random=self.random
                )
                log.warning("%s; retrying in %.1f s", exc, wait)
                if self.on_wait is not None:
                    self.on_wait(exc, wait)
                self.sleep(wait)
            if before_retry is not None and acted_maybe:
                landed = before_retry()
                if landed is not None:
                    return landed


def all_devices(
    client: ParticleCloud, product: str, retry: Retry, *, groups: Sequence[str] | None = None, per_page: int = 100
) -> list[ProductDevice]:
    def fetch(page: int) -> DevicePage:
        return retry(lambda: client.list_devices(product, page=page, per_page=per_page, groups=groups))

    return list(client.iter_devices(product, per_page=per_page, fetch=fetch))


def _firmware(client: ParticleCloud, product: str, retry: Retry) -> dict[int, ProductFirmware]:
    return {f.version: f for f in retry(lambda: client.list_firmware(product))}


def _need_version(versions: dict[int, ProductFirmware], version: int, product: str) -> ProductFirmware:
    found = versions.get(version)
    if found is None:
        have = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise RolloutRefused(
            f"product {product} has no firmware version {version} (it has: {have})",
            hint="upload it first: station console upload BUNDLE --product " + product,
        )
    return found


def _ids(devices: Sequence[ProductDevice]) -> str:
    shown = ", ".join(
        f"{d.id} (runs {_v(d.firmware_version)}{'' if d.online else ', offline'})" for d in devices[:_NAMED]
    )
    return shown + (f" and {len(devices) - _NAMED} more" if len(devices) > _NAMED else "")


def _state(device: ProductDevice) -> str:
    return f"runs {_v(device.firmware_version)}" + ("" if device.online else ", offline")


def _v(version: int | None) -> str:
    return "nothing yet" if version is None else f"v{version}"


# -- upload --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadOutcome:
    firmware: FirmwareToUpload
    product: ProductInfo
    uploaded: bool  # False: the product already had this version with these exact bytes
    notes: tuple[str, ...] = ()


def upload_firmware(client: ParticleCloud, product: str, fw: FirmwareToUpload, retry: Retry) -> UploadOutcome:
    """Upload ``fw`` unless the product already has its version (same bytes: nothing to do)."""
    info = retry(lambda: client.get_product(product))
    notes = check_product(fw, info)

    def already(*, landed: bool = False) -> UploadOutcome | None:
        versions = _firmware(client, product, retry)
        if fw.version not in versions:
            return None
        held = retry(lambda: client.download_firmware(product, fw.version))
        if held == fw.binary:
            return UploadOutcome(fw, info, uploaded=landed, notes=tuple(notes))
        raise RolloutRefused(
            f"product {product} already has firmware version {fw.version} with different bytes "
            f"({len(held)} bytes, sha256 {hashlib.sha256(held).hexdigest()[:16]}...; this binary: {len(fw.binary)} "
            f"bytes, sha256 {fw.sha256[:16]}...)",
            hint="a version is uploaded once: build the new firmware with a higher PRODUCT_VERSION",
        )

    found = already()
    if found is not None:
        return found

    def send() -> UploadOutcome:
        client.upload_firmware(
            product,
            version=fw.version,
            title=fw.title,
            description=fw.description or None,
            binary=fw.binary,
            filename=fw.image_name,
        )
        return UploadOutcome(fw, info, uploaded=True, notes=tuple(notes))

    # A dropped answer may hide an upload that landed: look before sending it again.
    return retry(send, before_retry=lambda: already(landed=True))


# -- lock / unlock -------------------------------------------------------------------------------


def _device(client: ParticleCloud, product: str, device_id: str, retry: Retry) -> ProductDevice:
    try:
        return retry(lambda: client.get_device(product, device_id))
    except CloudNotFound:
        raise RolloutRefused(
            f"device {device_id} is not in product {product}",
            hint="import it first (station sync), or check the device ID",
        ) from None


def lock_device(
    client: ParticleCloud, product: str, device_id: str, version: int, *, flash: bool, retry: Retry
) -> ProductDevice:
    """Lock a test device to an uploaded version; with ``flash`` the cloud pushes it now if online."""
    _need_version(_firmware(client, product, retry), version, product)
    before = _device(client, product, device_id, retry)
    after = retry(lambda: client.lock_device(product, device_id, version, flash=flash))
    return after or before


def unlock_device(client: ParticleCloud, product: str, device_id: str, retry: Retry) -> ProductDevice:
    before = _device(client, product, device_id, retry)
    after = retry(lambda: client.unlock_device(product, device_id))
    return after or before


# -- release -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseOutcome:
    product: str
    version: int
    groups: tuple[str, ...]  # empty: released as the product default
    running: tuple[ProductDevice, ...]  # devices that run the version
    waiting: tuple[ProductDevice, ...]  # locked to it, not running it yet


def release_firmware(
    client: ParticleCloud, product: str, version: int, retry: Retry, *, groups: Sequence[str] = ()
) -> ReleaseOutcome:
    """Release ``version`` only when at least one device of the product runs it."""
    names = tuple(dict.fromkeys(normalise_group_name(g, where="--group") for g in groups))
    _need_version(_firmware(client, product, retry), version, product)
    if names:
        have = {g.name for g in retry(lambda: client.list_groups(product))}
        missing = [g for g in names if g not in have]
        if missing:
            raise RolloutRefused(
                f"product {product} has no group(s) {', '.join(missing)}",
                hint="check the group names: station console devices --product " + product,
            )
    devices = all_devices(client, product, retry)
    running = tuple(d for d in devices if d.firmware_version == version)
    waiting = tuple(d for d in devices if d.desired_firmware_version == version and d.firmware_version != version)
    if not running:
        if waiting:
            detail = f"; locked to it but not running it yet: {_ids(waiting)}"
            hint = (
                "wait until a test device reconnects running it, or push it now to an online one: "
                f"station console lock {waiting[0].id} {version} --product {product} --now"
            )
        else:
            detail = ", and no device is locked to it"
            hint = f"lock a test device to it first: station console lock DEVICE_ID {version} --product {product}"
        raise RolloutRefused(
            f"refusing to release version {version} of product {product}: no device runs it yet{detail}", hint=hint
        )
    retry(lambda: client.release_firmware(product, version, groups=names or None, product_default=not names))
    return ReleaseOutcome(product, version, names, running, waiting)
