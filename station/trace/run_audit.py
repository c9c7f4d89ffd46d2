"""A station run's audit: the start (and a profile or bundle change, which needs a lead), the stop,
and the chain head signed with the station key when the run ends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.store import Registry
from station.store.audit import AuditAction, SignedHead
from station.store.station_key import default_key_path, load_or_create
from station.store.trace import Actor
from station.trace.release_floor import ReleaseDecision
from station.trace.roles import Right, require


@dataclass(frozen=True)
class RunSetup:
    """What a run puts on boards, as the audit records it."""

    profile: str
    bundle: str
    bundle_sha256: str
    product_id: int
    product_version: int
    security_version: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "bundle": self.bundle,
            "bundle_sha256": self.bundle_sha256,
            "product_id": self.product_id,
            "product_version": self.product_version,
            "security_version": self.security_version,
        }


def begin_run(registry: Registry, actor: Actor, setup: RunSetup, decision: ReleaseDecision) -> None:
    """Audit the start; a profile or bundle other than this station's last run's needs a lead."""
    audit = registry.audit
    last = audit.last(AuditAction.START.value, station_id=actor.station_id)
    if last is not None and last.after is not None:
        before = json.loads(last.after)
        previous = {k: before.get(k) for k in ("profile", "bundle_sha256")}
        now = {"profile": setup.profile, "bundle_sha256": setup.bundle_sha256}
        if previous != now:
            require(actor.name, actor.role, Right.CHANGE_PROFILE)
            audit.append(
                AuditAction.PROFILE_CHANGE,
                station_id=actor.station_id,
                actor=actor.name,
                role=actor.role,
                subject=setup.profile,
                before={k: before.get(k) for k in ("profile", "bundle", "bundle_sha256", "product_version")},
                after=setup.as_json(),
            )
    after = setup.as_json()
    if decision.downgrade_allowed_by is not None:
        after["downgrade_allowed_by"] = decision.downgrade_allowed_by
    audit.append(
        AuditAction.START,
        station_id=actor.station_id,
        actor=actor.name,
        role=actor.role,
        subject=setup.bundle,
        after=after,
    )


def end_run(registry: Registry, actor: Actor, *, passed: int, failed: int, key_path: Path | None) -> SignedHead:
    """Audit the stop and sign the chain head with the station key (made on first use)."""
    registry.audit.append(
        AuditAction.STOP,
        station_id=actor.station_id,
        actor=actor.name,
        role=actor.role,
        after={"passed": passed, "failed": failed},
    )
    return sign_head(registry, actor.station_id, key_path)


def sign_head(registry: Registry, station_id: str, key_path: Path | None) -> SignedHead:
    key = load_or_create(key_path or default_key_path(registry.path))
    return registry.audit.sign_head(station_id, key.sign, key.public_hex)
