"""Images the discovery and CLI tests flash, built with the project's own encoders."""

from __future__ import annotations

from firmware_tools.bundle.images import describe_particle
from firmware_tools.checks import Expectations
from firmware_tools.esp import build_app_image
from firmware_tools.particle import Dependency, ModuleFunction, pack_module, platform_id_from
from station.demo.sample_release import blinky_payload
from station.devices.base import FlashImage

# Device OS numbers the user part 1 on Gen2 and 2 on Gen3 and later (Device OS 3.1+, 256 KiB apps).
_GEN2 = {"photon", "p1", "electron"}


def user_index(platform: str) -> int:
    return 1 if platform in _GEN2 else 2


def particle_module(platform: str, *, size: int = 6000, seed: str = "app") -> bytes:
    return pack_module(
        blinky_payload(size, seed=seed),
        platform_id=platform_id_from(platform),
        function=ModuleFunction.USER_PART,
        index=user_index(platform),
        dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, 2300)],
    )


def particle_image(platform: str, *, size: int = 6000, seed: str = "app") -> FlashImage:
    data = particle_module(platform, size=size, seed=seed)
    facts = describe_particle(data, name="app.bin", expect=Expectations())
    return FlashImage(
        "app.bin",
        data,
        facts.address,
        kind="user-part",
        module_function=int(ModuleFunction.USER_PART),
        module_index=user_index(platform),
        platform_id=platform_id_from(platform),
    )


def esp_app(chip: str = "esp32", *, size: int = 20000) -> bytes:
    return build_app_image(chip=chip, version="1.0.0", project_name="bench-test", payload_size=size)


def esp_image(chip: str = "esp32", *, size: int = 20000) -> FlashImage:
    return FlashImage("app.bin", esp_app(chip, size=size), 0x10000, kind="app")
