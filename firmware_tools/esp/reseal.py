"""Editing an app image's version string and re-sealing it: checksum first, then the SHA-256 over it."""

from __future__ import annotations

import hashlib

from firmware_tools.errors import FirmwareError, FormatError, UnsupportedError
from firmware_tools.esp import layout
from firmware_tools.esp.descriptors import AppDescriptor
from firmware_tools.esp.encryption import looks_flash_encrypted
from firmware_tools.esp.image import EspImage, parse_esp_image

# esp_app_desc_t.version is char[32]: 31 characters and the NUL that ends them.
MAX_VERSION_BYTES = layout.APP_DESC_VERSION_SIZE - 1


class InvalidVersionString(FirmwareError):
    """The version text cannot be stored in esp_app_desc_t.version."""


def encode_version(version: str) -> bytes:
    """The 32 bytes esp_app_desc_t.version holds for ``version``, or InvalidVersionString."""
    raw = version.encode("utf-8")
    if not raw:
        raise InvalidVersionString("the app version must not be empty")
    if len(raw) > MAX_VERSION_BYTES:
        raise InvalidVersionString(
            f"app version {version!r} is {len(raw)} bytes; esp_app_desc_t holds at most "
            f"{MAX_VERSION_BYTES} plus the terminating NUL",
            hint="use a shorter version string",
        )
    if any(ch < 0x20 or ch == 0x7F for ch in raw):
        raise InvalidVersionString(f"app version {version!r} contains control characters")
    return raw.ljust(layout.APP_DESC_VERSION_SIZE, b"\0")


def set_app_version(data: bytes, version: str, *, name: str | None = None) -> bytes:
    """A copy of the app image ``data`` whose esp_app_desc_t.version is ``version``, re-sealed.

    Refused (UnsupportedError, saying why) for a flash-encrypted image, a signed one and an image
    without an app descriptor; a damaged image (bad checksum or hash) is refused as FormatError so
    that re-sealing never blesses corrupted bytes.
    """
    field = encode_version(version)
    if looks_flash_encrypted(data):
        raise UnsupportedError(
            "the image looks flash-encrypted (no 0xE9 magic, ciphertext-like bytes); its version cannot be edited",
            file=name,
            hint="set the version on the plaintext image, then encrypt it",
        )
    image = parse_esp_image(data, name=name)
    app = _editable_app(image, name)
    out = bytearray(data)
    start = app.file_offset + layout.APP_DESC_VERSION_OFFSET
    old = bytes(out[start : start + layout.APP_DESC_VERSION_SIZE])
    out[start : start + layout.APP_DESC_VERSION_SIZE] = field
    # The checksum XORs every data byte, so only the edited bytes change it.
    out[image.checksum_offset] = image.checksum_stored ^ _xor(old) ^ _xor(field)
    if image.hash_appended:
        sealed_end = image.checksum_offset + 1
        out[sealed_end : sealed_end + layout.SHA256_SIZE] = hashlib.sha256(out[:sealed_end]).digest()
    return bytes(out)


def _editable_app(image: EspImage, name: str | None) -> AppDescriptor:
    """The app descriptor to edit, once the image is known to be safe to edit and re-seal."""
    if image.signed:
        raise UnsupportedError(
            f"the image carries a {image.signature.value} signature after its hash; editing the "
            "version would invalidate it and the device would refuse to boot",
            file=name,
            hint="set the version before signing, then sign again",
        )
    if image.app is None:
        kind = "a bootloader" if image.bootloader is not None else "an image without esp_app_desc_t"
        raise UnsupportedError(f"this is {kind}; only an ESP-IDF app image has an app version to set", file=name)
    if not image.checksum_ok:
        raise FormatError(
            f"the image checksum is invalid (stored {image.checksum_stored:#04x}, computed "
            f"{image.checksum_computed:#04x}); refusing to re-seal a damaged image",
            file=name,
            offset=image.checksum_offset,
        )
    if image.sha256_ok is False:
        raise FormatError(
            "the appended SHA-256 does not match the image; refusing to re-seal a damaged image",
            file=name,
            offset=image.checksum_offset + 1,
        )
    return image.app


def _xor(chunk: bytes) -> int:
    value = 0
    for byte in chunk:
        value ^= byte
    return value
