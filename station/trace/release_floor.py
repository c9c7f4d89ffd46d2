"""No silent downgrade: the bundle's version against what this station has flashed, before anything is written.

Two floors. The product version: never below the newest version of the same product this
registry has passed a board with, nor below the profile's ``min_version``, unless a lead allows it
for one run (audited). The security version (the bundle's ``security_version``, like imgtool's
security counter): never below the highest one this station has accepted for the product, with
no override at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_tools.bundle.manifest import Manifest
from station.errors import Reason, StationError
from station.store import Registry
from station.store.audit import AuditAction
from station.store.trace import Actor
from station.trace.roles import Right, require


class DowngradeRefused(StationError):
    """The bundle is older than what the station must not go below; nothing was written."""

    exit_code = 1
    reason = Reason.REFUSED


@dataclass(frozen=True)
class ReleaseDecision:
    product_id: int
    version: int
    security_version: int | None
    newest_flashed: int | None
    min_version: int | None
    security_floor: int | None
    downgrade_allowed_by: str | None  # the lead who allowed a downgrade for this run


def check_release(
    registry: Registry,
    manifest: Manifest,
    *,
    min_version: int | None,
    station_id: str,
    allow_downgrade: Actor | None = None,
) -> ReleaseDecision:
    """Accept the bundle for this run or raise DowngradeRefused; a lead's allowance is audited.

    ``allow_downgrade`` is the signed-in actor who asked for it; AccessDenied if they are not a lead.
    Once accepted, the bundle's security version becomes the product's floor on this station.
    """
    trace = registry.trace
    product = manifest.product.id
    version = manifest.product_version
    security = manifest.security_version
    floor = trace.security_floor(product)
    if floor is not None and (security is None or security < floor):
        have = "no security version" if security is None else f"security version {security}"
        raise DowngradeRefused(
            f"bundle for product {product} has {have}; this station has accepted security version {floor}"
            " and never goes below it",
            hint=f"no override exists for this; use a bundle released with --security-version {floor} or higher",
        )
    newest = trace.newest_flashed_version(product)
    needed = max((v for v in (newest, min_version) if v is not None), default=None)
    allowed_by: str | None = None
    if needed is not None and version < needed:
        why = (
            f"version {newest} this station has flashed"
            if newest is not None and newest >= (min_version or 0)
            else f"the profile's min_version {min_version}"
        )
        if allow_downgrade is None:
            raise DowngradeRefused(
                f"bundle version {version} of product {product} is lower than {why}; nothing was written",
                hint="use the newer bundle, or have a lead run it once with --allow-downgrade",
            )
        require(allow_downgrade.name, allow_downgrade.role, Right.ALLOW_DOWNGRADE)
        registry.audit.append(
            AuditAction.ALLOW_DOWNGRADE,
            station_id=station_id,
            actor=allow_downgrade.name,
            role=allow_downgrade.role,
            subject=f"product {product}",
            before={"newest_flashed": newest, "min_version": min_version},
            after={"version": version, "for": "this run"},
        )
        allowed_by = allow_downgrade.name
    if security is not None:
        trace.raise_security_floor(product, security)
    return ReleaseDecision(product, version, security, newest, min_version, floor, allowed_by)
