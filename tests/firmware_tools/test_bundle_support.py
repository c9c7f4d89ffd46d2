"""Builders shared by the bundle tests: modules and images made with the project's own encoders, and zip surgery."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime

from firmware_tools import keys
from firmware_tools.bundle import Release, ReleaseInput, build_release
from firmware_tools.bundle.partition_table import Partition, build_partition_table
from firmware_tools.esp import build_app_image
from firmware_tools.particle import Dependency, ModuleFunction, pack_module

WHEN = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)
ARGON = 12


def fixed_clock() -> datetime:
    return WHEN


def argon_bootloader(version: int = 1101) -> bytes:
    return pack_module(
        b"B" * 700,
        platform_id=ARGON,
        function=ModuleFunction.BOOTLOADER,
        index=0,
        start_address=0xF4000,
        module_version=version,
        product_id=0,
        product_version=0,
    )


def argon_system_part(version: int = 6200) -> bytes:
    return pack_module(
        bytes(range(256)) * 8,
        platform_id=ARGON,
        function=ModuleFunction.SYSTEM_PART,
        index=1,
        start_address=0x30000,
        module_version=version,
        dependencies=[Dependency(ModuleFunction.BOOTLOADER, 0, 1101)],
        product_id=0,
        product_version=0,
    )


def argon_user_part(
    *, product_id: int | None = 0xFFFF, product_version: int | None = 0xFFFF, payload: bytes = b"U" * 900
) -> bytes:
    return pack_module(
        payload,
        platform_id=ARGON,
        function=ModuleFunction.USER_PART,
        index=2,
        dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, 6200)],
        product_id=product_id,
        product_version=product_version,
    )


def particle_inputs() -> list[ReleaseInput]:
    """Given out of order on purpose: the release must put them in flash order."""
    return [
        ReleaseInput("tinker.bin", argon_user_part()),
        ReleaseInput("system-part1.bin", argon_system_part()),
        ReleaseInput("bootloader.bin", argon_bootloader()),
    ]


# nvs, a factory app at 0x10000 and ota_0 at 0x110000, as an ESP-IDF two-app table places them.
ESP_TABLE = [
    Partition("nvs", 1, 2, 0x9000, 0x6000, 0),
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
    Partition("ota_0", 0, 0x10, 0x110000, 0x100000, 0),
]


def esp_inputs(chip: str = "esp32") -> list[ReleaseInput]:
    return [
        ReleaseInput("ota1.bin", build_app_image(chip=chip, version="2.0.0", seed=2, payload_size=1024), 0x110000),
        ReleaseInput("app.bin", build_app_image(chip=chip, version="2.0.0", seed=1, payload_size=1024), 0x10000),
        ReleaseInput("partitions.bin", build_partition_table(ESP_TABLE), 0x8000),
    ]


def particle_release(key: keys.SigningKey, **kwargs: object) -> Release:
    args: dict[str, object] = {
        "product_id": 1234,
        "product_version": 7,
        "key": key,
        "product_name": "Acme Sensor",
        "clock": fixed_clock,
    }
    args.update(kwargs)
    return build_release(particle_inputs(), **args)  # type: ignore[arg-type]


def esp_release(key: keys.SigningKey) -> Release:
    return build_release(
        esp_inputs(), product_id=99, product_version=2, key=key, product_name="Acme ESP", clock=fixed_clock
    )


def members(bundle: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rezip(
    bundle: bytes, *, replace: Mapping[str, bytes | None] | None = None, add: Mapping[str, bytes] | None = None
) -> bytes:
    """``bundle`` with members replaced (None removes one) or added, everything else as it was."""
    replace = dict(replace or {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members(bundle):
            new = replace.get(name, data)
            if new is not None:
                zf.writestr(name, new)
        for name, data in (add or {}).items():
            zf.writestr(name, data)
    return out.getvalue()
