"""ESP32-family app and bootloader images: read, validate, set the app version, build test images.

Nothing here imports esptool until an image is actually parsed or built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware_tools.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from firmware_tools.esp.builder import build_app_image
    from firmware_tools.esp.chips import Chip, chip_by_id, chip_by_name
    from firmware_tools.esp.descriptors import AppDescriptor, BootloaderDescriptor
    from firmware_tools.esp.encryption import looks_flash_encrypted
    from firmware_tools.esp.image import EspImage, Segment, parse_esp_image
    from firmware_tools.esp.reseal import InvalidVersionString, set_app_version
    from firmware_tools.esp.signature import SignatureScheme
    from firmware_tools.esp.validate import validate_esp_image

# Each name is imported on first use: detecting formats must not pay for esptool or the builder.
_EXPORTS = {
    "build_app_image": "firmware_tools.esp.builder",
    "Chip": "firmware_tools.esp.chips",
    "chip_by_id": "firmware_tools.esp.chips",
    "chip_by_name": "firmware_tools.esp.chips",
    "AppDescriptor": "firmware_tools.esp.descriptors",
    "BootloaderDescriptor": "firmware_tools.esp.descriptors",
    "looks_flash_encrypted": "firmware_tools.esp.encryption",
    "EspImage": "firmware_tools.esp.image",
    "Segment": "firmware_tools.esp.image",
    "parse_esp_image": "firmware_tools.esp.image",
    "InvalidVersionString": "firmware_tools.esp.reseal",
    "set_app_version": "firmware_tools.esp.reseal",
    "SignatureScheme": "firmware_tools.esp.signature",
    "validate_esp_image": "firmware_tools.esp.validate",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "AppDescriptor",
    "BootloaderDescriptor",
    "Chip",
    "EspImage",
    "InvalidVersionString",
    "Segment",
    "SignatureScheme",
    "build_app_image",
    "chip_by_id",
    "chip_by_name",
    "looks_flash_encrypted",
    "parse_esp_image",
    "set_app_version",
    "validate_esp_image",
]
