"""ESP32-family app and bootloader images: read, validate, set the app version, build test images.

Nothing here imports esptool until an image is actually parsed or built.
"""

from __future__ import annotations

from firmware_tools.esp.builder import build_app_image
from firmware_tools.esp.chips import Chip, chip_by_id, chip_by_name
from firmware_tools.esp.descriptors import AppDescriptor, BootloaderDescriptor
from firmware_tools.esp.encryption import looks_flash_encrypted
from firmware_tools.esp.image import EspImage, Segment, parse_esp_image
from firmware_tools.esp.reseal import InvalidVersionString, set_app_version
from firmware_tools.esp.signature import SignatureScheme
from firmware_tools.esp.validate import validate_esp_image

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
