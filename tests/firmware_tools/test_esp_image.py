"""Reading ESP images: the encoder's output, the chip table, sniffing, signatures, lazy esptool import."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import zlib

import pytest

from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.esp import SignatureScheme, build_app_image, parse_esp_image
from firmware_tools.esp.chips import CHIPS, FLASH_SIZES, chip_by_id, chip_by_name
from firmware_tools.esp.fwformat import FORMAT
from firmware_tools.esp.header import sniff_score

CHIP_KEYS = [c.key for c in CHIPS]


def _load_with_esptool(chip: str, data: bytes) -> object:
    from esptool.bin_image import LoadFirmwareImage

    return LoadFirmwareImage(chip, data)


def test_chip_table_agrees_with_esptool() -> None:
    from esptool.targets import CHIP_DEFS

    esptool_chips = {k: c for k, c in CHIP_DEFS.items() if k != "esp8266"}
    assert sorted(esptool_chips) == sorted(CHIP_KEYS)
    for key, rom in esptool_chips.items():
        chip = chip_by_id(rom.IMAGE_CHIP_ID)
        assert chip is not None and chip.key == key and chip.name == rom.CHIP_NAME
        first_name_per_code: dict[int, str] = {}
        for name, code in rom.FLASH_FREQUENCY.items():
            first_name_per_code.setdefault(code, name)
        assert chip.flash_freqs == first_name_per_code, key
        assert {code >> 4: name for name, code in rom.FLASH_SIZES.items()} == FLASH_SIZES, key


@pytest.mark.parametrize("spelling", ["ESP32-S3", "esp32s3", "esp32_s3", "Esp32-S3"])
def test_chip_names_in_any_spelling(spelling: str) -> None:
    chip = chip_by_name(spelling)
    assert chip is not None and chip.chip_id == 9


@pytest.mark.parametrize("chip", CHIP_KEYS)
def test_built_image_is_accepted_by_esptool_and_reads_back(chip: str) -> None:
    data = build_app_image(chip=chip, version="2.3.4", project_name="widget", payload_size=5000, seed=7)
    loaded = _load_with_esptool(chip, data)
    assert loaded.checksum == loaded.calculate_checksum()  # type: ignore[attr-defined]
    assert loaded.stored_digest == loaded.calc_digest  # type: ignore[attr-defined]

    image = parse_esp_image(data)
    assert image.chip_key == chip
    assert image.checksum_ok and image.sha256_ok
    assert not image.signed and image.trailing_size == 0
    assert image.app is not None
    assert image.app.version == "2.3.4"
    assert image.app.project_name == "widget"
    assert image.app.file_offset == 0x20  # where ESP-IDF's linker puts it
    assert image.app.mmu_page_size == 0x10000
    assert FORMAT.sniff(data) >= 90


def test_encoder_is_deterministic_and_seeded() -> None:
    assert build_app_image(seed=1) == build_app_image(seed=1)
    assert build_app_image(seed=1) != build_app_image(seed=2)


def test_payload_size_grows_the_image() -> None:
    small = parse_esp_image(build_app_image(payload_size=100))
    big = parse_esp_image(build_app_image(payload_size=200_000))
    assert big.size > small.size + 190_000
    code = [s for s in big.segments if s.flash_mapped and "IROM" in s.memory_types]
    assert code and code[-1].length >= 200_000


def test_encoder_refuses_what_it_cannot_build() -> None:
    with pytest.raises(UnsupportedError, match="unknown chip"):
        build_app_image(chip="esp8266")
    with pytest.raises(UnsupportedError, match="flash size"):
        build_app_image(flash_size="3MB")
    with pytest.raises(UnsupportedError, match="project name"):
        build_app_image(project_name="x" * 32)


def test_header_fields_are_read() -> None:
    image = parse_esp_image(build_app_image(chip="esp32c3", flash_mode="qio", flash_size="16MB"))
    assert (image.chip, image.chip_id) == ("ESP32-C3", 5)
    assert (image.flash_mode, image.flash_size, image.flash_freq) == ("QIO", "16MB", "40m")


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\xea", "magic"),
        (1, b"\x00", "segment count"),
        (1, b"\x11", "segment count"),
        (2, b"\x04", "flash mode"),
        (3, b"\x80", "flash size"),
        (3, b"\x05", "flash frequency"),
        (12, b"\x63\x00", "chip id"),
        (23, b"\x02", "hash_appended"),
    ],
)
def test_bad_header_bytes_are_named(offset: int, value: bytes, message: str) -> None:
    data = _patched(build_app_image(), offset, value)
    assert sniff_score(data) == 0
    with pytest.raises(FormatError, match=message) as info:
        parse_esp_image(data, name="app.bin")
    assert info.value.file == "app.bin"
    assert info.value.offset is not None


def test_truncated_images_are_format_errors() -> None:
    data = build_app_image()
    image = parse_esp_image(data)
    for cut in (10, 24, 40, image.checksum_offset, image.checksum_offset + 1, image.size - 1):
        with pytest.raises(FormatError):
            parse_esp_image(data[:cut])


def test_missing_sha_is_reported_as_truncation() -> None:
    data = build_app_image()
    image = parse_esp_image(data)
    with pytest.raises(FormatError, match="truncated"):
        parse_esp_image(data[: image.checksum_offset + 10])


def test_corruption_is_seen_in_checksum_and_hash() -> None:
    data = build_app_image()
    image = parse_esp_image(data)
    code = image.segments[-1]
    bad = parse_esp_image(_patched(data, code.data_offset + 5, bytes([data[code.data_offset + 5] ^ 0x40])))
    assert not bad.checksum_ok and bad.sha256_ok is False
    # A header byte is not summed, but it is hashed.
    other_freq = parse_esp_image(_patched(data, 3, bytes([data[3] | 0x0F])))
    assert other_freq.checksum_ok and other_freq.sha256_ok is False


def test_padding_after_the_image_is_not_a_signature() -> None:
    data = build_app_image() + b"\xff" * 4096
    image = parse_esp_image(data)
    assert image.signature is SignatureScheme.NONE and image.trailing_size == 4096


def test_secure_boot_v1_block_is_detected() -> None:
    data = build_app_image() + struct.pack("<I", 0) + hashlib.sha512(b"sig").digest()
    assert parse_esp_image(data).signature is SignatureScheme.SECURE_BOOT_V1


def test_secure_boot_v2_sector_is_detected() -> None:
    data = build_app_image()
    padded = data + b"\xff" * (-len(data) % 4096)
    block = bytes([0xE7, 0x02, 0, 0]) + hashlib.sha256(padded).digest() + bytes(1196 - 36)
    block += struct.pack("<I", zlib.crc32(block)) + bytes(16)
    sector = block + b"\xff" * (4096 - len(block))
    assert parse_esp_image(padded + sector).signature is SignatureScheme.SECURE_BOOT_V2
    # Same bytes with a broken CRC are not a signature block.
    broken = bytearray(padded + sector)
    broken[len(padded) + 1196] ^= 1
    assert parse_esp_image(bytes(broken)).signature is SignatureScheme.NONE


def test_flash_encrypted_image_is_refused_with_the_reason() -> None:
    data = hashlib.shake_256(b"ciphertext").digest(8192)
    if data[0] == 0xE9:
        data = b"\x00" + data[1:]
    with pytest.raises(FormatError, match="flash-encrypted"):
        parse_esp_image(data)


def test_sniffing_does_not_import_esptool() -> None:
    code = (
        "import sys\n"
        "from firmware_tools.esp.fwformat import FORMAT\n"
        "from firmware_tools.esp import build_app_image\n"
        "assert FORMAT.sniff(bytes([0xE9, 4, 2, 0x20]) + bytes(60)) > 0\n"
        "assert 'esptool' not in sys.modules, 'esptool imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_esptool_output_is_captured(capsys: pytest.CaptureFixture[str]) -> None:
    parse_esp_image(build_app_image(chip="esp32s3"))
    with pytest.raises(FormatError):
        parse_esp_image(build_app_image()[:100])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_parsing_from_many_threads_leaves_stdout_alone() -> None:
    from concurrent.futures import ThreadPoolExecutor

    stdout, stderr = sys.stdout, sys.stderr
    images = [build_app_image(chip=c.key, payload_size=256) for c in CHIPS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parsed = list(pool.map(parse_esp_image, images * 4))
    assert all(p.checksum_ok for p in parsed)
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
