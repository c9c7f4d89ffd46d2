"""The ESP32-family image as one of the formats ``fwtool inspect`` and ``validate`` detect by content."""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware_tools.checks import Expectations, ValidationReport
from firmware_tools.esp.header import sniff_score

if TYPE_CHECKING:
    from firmware_tools.esp.image import EspImage


class EspImageFormat:
    """Implements firmware_tools.formats.FirmwareFormat for ESP app and bootloader images."""

    name = "esp-image"

    def sniff(self, data: bytes) -> int:
        return sniff_score(data)

    def near_miss(self, data: bytes) -> str | None:
        """Why bytes that sniff as nothing may still be an ESP image: a flash-encrypted one."""
        from firmware_tools.esp.encryption import looks_flash_encrypted

        if looks_flash_encrypted(data):
            return "it looks like a flash-encrypted ESP image (ciphertext, no image header); use the plaintext image"
        return None

    def inspect(self, data: bytes) -> dict[str, object]:
        from firmware_tools.esp.image import parse_esp_image

        return parse_esp_image(data).to_json()

    def summary(self, data: bytes) -> list[str]:
        from firmware_tools.esp.image import parse_esp_image

        return summary_lines(parse_esp_image(data))

    def validate(self, data: bytes, expect: Expectations) -> ValidationReport:
        from firmware_tools.esp.validate import validate_esp_image

        return validate_esp_image(data, expect)


def summary_lines(image: EspImage) -> list[str]:
    """The image as lines a person reads, in the order esptool image-info prints them."""
    from firmware_tools.esp.image import rev_text

    max_rev = rev_text(image.max_rev) if image.max_rev_bounded else "any"
    lines = [
        f"ESP image for {image.chip} (chip id {image.chip_id}), {image.size} bytes",
        f"entry point {image.entry:#010x}; flash {image.flash_mode}, {image.flash_size}, "
        f"{image.flash_freq}; chip revision {rev_text(image.min_rev)} to {max_rev}",
        f"{len(image.segments)} segments:",
    ]
    for i, seg in enumerate(image.segments):
        lines.append(
            f"  {i:2}  load {seg.load_address:#010x}  length {seg.length:#08x}  "
            f"file offset {seg.file_offset:#08x}  {seg.memory_type}"
        )
    verdict = "valid" if image.checksum_ok else f"INVALID, computed {image.checksum_computed:#04x}"
    lines.append(f"checksum {image.checksum_stored:#04x} ({verdict})")
    if image.sha256_stored is None:
        lines.append("no SHA-256 appended")
    else:
        lines.append(f"SHA-256 {image.sha256_stored.hex()} ({'valid' if image.sha256_ok else 'INVALID'})")
    if image.signed:
        lines.append(f"signed: {image.signature.value} signature blocks follow the hash")
    elif image.trailing_size:
        lines.append(f"{image.trailing_size} bytes follow the image")
    if image.app is not None:
        app = image.app
        lines += [
            f"app {app.project_name!r} version {app.version!r}, secure version {app.secure_version}",
            f"built {app.date} {app.time} with ESP-IDF {app.idf_ver}",
            f"ELF SHA-256 {app.elf_sha256.hex()}",
        ]
    elif image.bootloader is not None:
        boot = image.bootloader
        lines.append(f"bootloader version {boot.version}, ESP-IDF {boot.idf_ver}, built {boot.date_time}")
    return lines


FORMAT = EspImageFormat()
