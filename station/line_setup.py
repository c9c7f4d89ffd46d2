"""Everything a run needs, prepared once at start: the profile, the verified bundle, the plan, cloud settings.

`station check` and `station run` share this, so what check approves is exactly what run does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware_tools.bundle import VerifiedBundle, open_verified_bundle
from station.errors import InputError
from station.line.plan import JobPlan, plan_from_bundle
from station.profile import Profile, load_profile

if TYPE_CHECKING:
    from station.cloud.config import CloudConfig
    from station.labels.printer import LabelConfig

# A bundle larger than this is refused before reading (the bundle reader bounds its members too).
MAX_BUNDLE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PreparedLine:
    profile: Profile
    bundle: VerifiedBundle
    bundle_sha256: str
    plan: JobPlan
    cloud: CloudConfig | None  # when the profile has a [cloud] section
    labels: LabelConfig | None = None  # when the profile has a [label] section: print a label per PASS

    def esp_options(self) -> dict[str, Any]:
        """What every ESP board of this line is opened with: the profile's baud and connect attempts,
        and the bundle's chip, so esptool connects as that chip instead of detecting it. For an ESP bundle
        this also starts compressing its images (once per bundle; every board reuses the result)."""
        options: dict[str, Any] = {"baud": self.profile.esp_baud, "connect_attempts": self.profile.connect_attempts}
        if self.plan.target.chip is not None:
            options["chip"] = self.plan.target.chip
            from station.devices.esptool_adapter import precompress

            # Once per bundle, while the line waits for its first board; every board reuses it.
            precompress([image.data for image in self.plan.images])
        return options


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise InputError(f"bundle {path} is larger than {MAX_BUNDLE_BYTES} bytes")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read bundle {path}: {exc.strerror}", hint="check the profile's bundle path") from exc
    return digest.hexdigest()


def prepare_line(
    profile: str | Path | Profile, *, operator: str | None = None, today: Callable[[], date] = date.today
) -> PreparedLine:
    """Load and check the profile, verify the bundle once, and build the plan.

    With a [cloud] section, the run's devices go into the device group its ``group`` names (by
    default ``YYYYMMDD_<station id>``, the day the run starts, from ``today``).

    Raises InputError for a bad profile, and the bundle's CheckFailed / FormatError for a bundle
    that does not verify against the profile's trusted keys.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    cloud: CloudConfig | None = None
    sync_product = None
    sync_group = None
    if profile.cloud is not None:
        from station.cloud.config import CloudConfig
        from station.cloud.groups import batch_group

        where = f"{profile.path} [cloud]"
        cloud = CloudConfig.from_mapping(profile.cloud, where=where, base_dir=profile.path.parent)
        sync_product = cloud.product
        if cloud.group is not None:
            sync_group = batch_group(cloud.group, station_id=profile.station_id, day=today(), where=f"{where} group")
    bundle_sha256 = _file_sha256(profile.bundle)
    bundle = open_verified_bundle(
        profile.bundle, list(profile.trusted_keys), require_signature=profile.require_signature
    )
    plan = plan_from_bundle(
        bundle,
        profile,
        bundle_sha256=bundle_sha256,
        operator=operator or profile.operator,
        sync_product=sync_product,
        sync_group=sync_group,
    )
    if profile.unit_data is not None:
        from dataclasses import replace

        from station.line.unit_data import unit_data_plan

        unit = unit_data_plan(
            profile.unit_data,
            where=f"{profile.path} [unit_data]",
            base_dir=profile.path.parent,
            bundle=bundle,
            station_id=profile.station_id,
        )
        plan = replace(plan, unit_data=unit)
    labels: LabelConfig | None = None
    if profile.label_printer is not None:
        from station.labels.printer import LabelConfig

        where = f"{profile.path} [label]"
        labels = LabelConfig.from_mapping(profile.label_printer, where=where, base_dir=profile.path.parent)
    return PreparedLine(profile, bundle, bundle_sha256, plan, cloud, labels)
