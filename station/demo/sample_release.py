"""A sample product release made with the project's own encoders: a blinky-like app, a throwaway key.

Used by `station demo`, the benchmarks and the tests, so that none of them needs a real build.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from firmware_tools import keys
from firmware_tools.bundle import ReleaseInput, build_release, write_bundle
from firmware_tools.esp import build_app_image
from firmware_tools.particle import Dependency, ModuleFunction, pack_module, platform_id_from
from firmware_tools.particle.constants import NRF52840_PLATFORMS

# User parts depend on system part 1 at this version (Device OS 6.2.0).
_SYSTEM_PART_VERSION = 6200


@dataclass(frozen=True)
class SampleRelease:
    bundle: Path
    public_key: Path
    private_key: Path
    product_id: int
    product_version: int


def blinky_payload(size: int, *, seed: str = "blinky") -> bytes:
    """Deterministic bytes that look like code: no compressor gets them for free, as with a real app."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def particle_app(
    platform: str, *, size: int = 8 * 1024, product_id: int = 0xFFFF, product_version: int = 0xFFFF
) -> bytes:
    platform_id = platform_id_from(platform)
    return pack_module(
        blinky_payload(size),
        platform_id=platform_id,
        function=ModuleFunction.USER_PART,
        # nRF52840 apps have been user part 2 (256 KiB at 0xB4000) since Device OS 3.1; others use 1.
        index=2 if platform_id in NRF52840_PLATFORMS else 1,
        dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, _SYSTEM_PART_VERSION)],
        product_id=product_id,
        product_version=product_version,
    )


def make_sample_release(
    folder: Path,
    *,
    target: str = "argon",
    product_id: int = 4242,
    product_version: int = 3,
    app_size: int = 8 * 1024,
    name: str = "acme-blinky",
    security_version: int | None = None,
) -> SampleRelease:
    """Write ``NAME.fwpkg``, ``release.key`` (0600) and ``release.pub`` into ``folder``.

    ``target`` is a Particle platform name or an ESP chip (``esp32``, ``esp32s3``, ``esp32c3``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = keys.generate_key()
    files = keys.write_key_pair(key, folder / "release", overwrite=True)
    if target.lower().startswith("esp"):
        app = build_app_image(chip=target, version=f"{product_version}.0.0", project_name=name, payload_size=app_size)
        inputs = [ReleaseInput(f"{name}.bin", app, 0x10000)]
    else:
        inputs = [ReleaseInput(f"{name}.bin", particle_app(target, size=app_size))]
    release = build_release(
        inputs,
        product_id=product_id,
        product_version=product_version,
        key=key,
        product_name=name,
        notes="sample",
        security_version=security_version,
    )
    bundle = folder / f"{name}-v{product_version}.fwpkg"
    write_bundle(bundle, release)
    return SampleRelease(bundle, files.public_path, files.private_path, product_id, product_version)
