"""What the line does with every device: the target it must be, the images, and the policies.

Built once at start from the verified bundle and the profile, then shared read-only by every
worker: the images are bytes in memory, so no file is re-read mid-shift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from firmware_tools.bundle import VerifiedBundle
from firmware_tools.bundle.manifest import PARTICLE_KIND_BY_FUNCTION
from station.devices.base import FlashImage
from station.devices.family import Target
from station.line.unit_data import UnitDataPlan
from station.profile import LineMode, Profile, VerifyPolicy
from station.store.models import ImageDigest, RunContext

_FUNCTION_BY_KIND = {kind: code for code, kind in PARTICLE_KIND_BY_FUNCTION.items()}

# The device a bundle is for; whether a board can take it is its family's ``accepts``
# (station.devices.families), so the line, `station flash` and every family agree.
__all__ = ["JobPlan", "Target", "flash_images", "plan_from_bundle", "target_of"]


@dataclass(frozen=True)
class JobPlan:
    station_id: str
    target: Target
    images: tuple[FlashImage, ...]
    mode: LineMode = LineMode.FLASH
    verify: VerifyPolicy = VerifyPolicy.ALWAYS
    confirm_version: bool = True
    job_timeout: float = 600.0
    operator: str | None = None
    product_id: int | None = None
    product_version: int | None = None
    bundle_id: str | None = None
    bundle_sha256: str | None = None
    sync_product: str | None = None  # enqueue PASSes for this product's import, when cloud sync is on
    sync_group: str | None = None  # the device group each import batch goes into
    unit_data: UnitDataPlan | None = None  # [unit_data]: each board's own NVS partition

    def run_context(self) -> RunContext:
        """What the registry records with every attempt of this run."""
        return RunContext(
            station_id=self.station_id,
            operator=self.operator,
            bundle_id=self.bundle_id,
            bundle_sha256=self.bundle_sha256,
            product_id=self.product_id,
            product_version=self.product_version,
            images=tuple(ImageDigest(i.name, i.sha256) for i in self.images),
        )


def target_of(bundle: VerifiedBundle) -> Target:
    """The device a verified bundle is for."""
    t = bundle.manifest.target
    if t.chip is not None:
        return Target(chip=t.chip)
    return Target(platform_id=t.platform_id, platform_name=t.platform_name)


def flash_images(bundle: VerifiedBundle) -> tuple[FlashImage, ...]:
    """A verified bundle's images as the devices take them, in flash order, bytes in memory."""
    return tuple(
        FlashImage(
            name=i.name,
            data=i.data,
            address=i.address,
            kind=i.kind.value,
            module_function=None if i.particle is None else _FUNCTION_BY_KIND[i.particle.module_function],
            module_index=None if i.particle is None else i.particle.module_index,
            platform_id=None if i.particle is None else i.particle.platform_id,
            sha256=i.sha256,
        )
        for i in bundle.images
    )


def plan_from_bundle(
    bundle: VerifiedBundle,
    profile: Profile,
    *,
    bundle_sha256: str,
    operator: str | None,
    sync_product: str | None = None,
    sync_group: str | None = None,
) -> JobPlan:
    """The line's plan from a verified bundle and the profile: images in flash order, held in memory."""
    m = bundle.manifest
    target = target_of(bundle)
    images = flash_images(bundle)
    return JobPlan(
        station_id=profile.station_id,
        target=target,
        images=images,
        mode=profile.mode,
        verify=profile.verify,
        confirm_version=profile.confirm_version,
        job_timeout=profile.job_timeout,
        operator=operator,
        product_id=m.product.id,
        product_version=m.product_version,
        bundle_id=hashlib.sha256(bundle.manifest_bytes).hexdigest()[:16],
        bundle_sha256=bundle_sha256,
        sync_product=sync_product,
        sync_group=sync_group,
    )
