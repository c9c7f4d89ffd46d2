"""Particle module behaviour on inputs the project builds itself: refusals, checks, ordering, edge layouts."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from firmware_tools.checks import Expectations
from firmware_tools.errors import FirmwareError, FormatError, UnsupportedError
from firmware_tools.particle import (
    PLATFORMS,
    Dependency,
    ModuleFlags,
    ModuleFunction,
    combine_modules,
    compress_module,
    decompress_module,
    flash_order,
    flash_order_key,
    pack_module,
    parse_module,
    platform_id_from,
    split_combined,
    stamp_product,
    validate_module,
)
from firmware_tools.particle.extensions import encode_name, encode_tlv
from firmware_tools.particle.layout import PREFIX, SUFFIX_BASE
from firmware_tools.particle.seal import reseal

NOTHING = Expectations()


def _failed(data: bytes, expect: Expectations = NOTHING) -> list[str]:
    return [c.name for c in validate_module(data, expect).failed]


def _hand_module(*, flags: int = 0, after_prefix: bytes = b"", suffix_tail: bytes = b"") -> bytes:
    """A user part for argon assembled field by field, for layouts pack_module does not make."""
    payload = after_prefix + bytes(64)
    suffix_size = len(suffix_tail) + SUFFIX_BASE.size
    total = PREFIX.size + len(payload) + suffix_size + 4
    start = 0xD4000
    prefix = PREFIX.pack(start, start + total - 4, 0, flags, 6, 12, 5, 1, 4, 1, 5301, 0, 0, 0)
    return reseal(prefix + payload + suffix_tail + SUFFIX_BASE.pack(0, bytes(32), suffix_size) + bytes(4))


def test_platform_names_and_numbers() -> None:
    assert platform_id_from("argon") == 12
    assert platform_id_from("P2") == 32
    assert platform_id_from(" 13 ") == 13
    assert platform_id_from("0x20") == 32
    assert PLATFORMS[35] == "msom"
    with pytest.raises(FirmwareError, match="unknown platform"):
        platform_id_from("toaster")
    with pytest.raises(FirmwareError, match="outside"):
        platform_id_from("70000")


def test_stamp_refuses_a_suffix_without_product_fields() -> None:
    data = pack_module(b"app", platform_id=6, product_id=None, product_version=None)
    assert parse_module(data).suffix.suffix_size == 36
    with pytest.raises(UnsupportedError, match="36-byte suffix with no product id"):
        stamp_product(data, product_id=1, product_version=1)


def test_stamp_refuses_compressed_and_out_of_range() -> None:
    data = pack_module(b"app" * 50, platform_id=12)
    with pytest.raises(UnsupportedError, match="compressed"):
        stamp_product(compress_module(data), product_id=1, product_version=1)
    with pytest.raises(UnsupportedError, match="16-bit"):
        stamp_product(data, product_id=70000, product_version=1)


def test_stamp_on_p2_writes_inside_product_data_extension() -> None:
    data = pack_module(b"x" * 100, platform_id=32, product_id=7, product_version=1)
    module = parse_module(stamp_product(data, product_id=94, product_version=3))
    assert (module.suffix.product_id, module.suffix.product_version) == (94, 3)
    [product_data] = [e for e in module.suffix.extensions if e.type == 1]
    assert product_data.data.hex() == "01000a00ffff5e000300"


def test_validate_names_each_failed_expectation() -> None:
    data = pack_module(b"app", platform_id=12, product_id=5, product_version=2)
    assert validate_module(data, Expectations(platform=12, product_id=5, product_version=2)).ok
    failed = _failed(data, Expectations(platform=13, product_id=6, product_version=3))
    assert failed == ["expected-platform", "expected-product-id", "expected-product-version"]
    assert _failed(data, Expectations(chip="esp32")) == ["expected-chip"]


def test_validate_explains_device_os_4_product_field() -> None:
    deps = [Dependency(ModuleFunction.SYSTEM_PART, 1, 6200)]
    data = pack_module(b"app", platform_id=13, product_id=13, product_version=4, dependencies=deps)
    assert parse_module(data).product_id_meaning == "platform-id"
    report = validate_module(data, Expectations(product_id=94))
    [check] = report.failed
    assert "platform id 13" in check.reason and "Device OS >= 4" in check.reason


def test_validate_catches_sha_and_crc_damage() -> None:
    data = bytearray(pack_module(b"payload" * 10, platform_id=10))
    data[30] ^= 0xFF
    assert _failed(bytes(data)) == ["crc32", "sha256"]
    assert _failed(reseal(data)) == []
    # Re-sealing the CRC only, as a careless tool would, leaves the SHA wrong.
    crc_only = bytearray(data)
    crc_only[-4:] = (zlib.crc32(bytes(crc_only[:-4])) & 0xFFFFFFFF).to_bytes(4, "big")
    assert _failed(bytes(crc_only)) == ["sha256"]


def test_validate_flags_unknown_dependency_and_platform() -> None:
    bad = pack_module(b"app", platform_id=12, dependencies=[Dependency(50, 1, 1)])
    assert _failed(bad) == ["dependencies"]
    unknown_platform = pack_module(b"app", platform_id=999, start_address=0x1000)
    assert _failed(unknown_platform) == ["platform"]


def test_prefix_extensions_must_end_with_end() -> None:
    good = _hand_module(flags=ModuleFlags.PREFIX_EXTENSIONS, after_prefix=encode_name("a") + encode_tlv(0, b""))
    module = parse_module(good)
    assert module.prefix_size == 24 + 5 + 4
    assert [e.type_name for e in module.prefix.extensions] == ["NAME", "END"]
    bad = _hand_module(flags=ModuleFlags.PREFIX_EXTENSIONS, after_prefix=encode_name("a") + b"\xff\xff\x00\x00")
    with pytest.raises(FormatError, match="END"):
        parse_module(bad, name="bad.bin")


def test_zero_length_suffix_extension_is_an_error_with_offset() -> None:
    data = _hand_module(suffix_tail=b"\x05\x00\x00\x00" + bytes(10) + b"\xff\xff\x01\x00")
    with pytest.raises(FormatError, match="invalid extension length 0") as info:
        parse_module(data, name="zero.bin")
    assert info.value.file == "zero.bin" and info.value.offset is not None


def test_empty_and_short_files() -> None:
    with pytest.raises(FormatError, match="empty"):
        parse_module(b"", name="e.bin")
    with pytest.raises(FormatError, match="too short"):
        parse_module(b"\xa5")
    with pytest.raises(FormatError, match="no plausible module prefix"):
        parse_module(bytes(4096))


def test_corrupt_compressed_module_reports_its_inner_error() -> None:
    compressed = bytearray(compress_module(pack_module(bytes(range(256)) * 8, platform_id=12)))
    compressed[40:48] = b"\xff" * 8  # inside the Deflate stream
    module = parse_module(reseal(compressed))
    assert module.inner == () and module.inner_error
    assert "inner" in _failed(reseal(compressed))


def test_pack_refusals() -> None:
    with pytest.raises(FirmwareError, match="asset_name"):
        pack_module(b"x", platform_id=0, function=ModuleFunction.ASSET)
    with pytest.raises(FirmwareError, match="no default address"):
        pack_module(b"x", platform_id=0)
    with pytest.raises(FirmwareError, match="2 dependencies"):
        pack_module(b"x", platform_id=12, dependencies=[Dependency(4, 1, 1)] * 3)
    with pytest.raises(FirmwareError, match="both product id and product version"):
        pack_module(b"x", platform_id=12, product_id=None)


def test_pack_asset_module_names_its_data() -> None:
    data = pack_module(
        b"hello", platform_id=0, function=ModuleFunction.ASSET, index=0, start_address=0, asset_name="a.txt"
    )
    module = parse_module(data)
    assert module.asset_name == "a.txt"
    assert module.flags & ModuleFlags.DROP_MODULE_INFO
    assert module.asset_hash == hashlib.sha256(b"hello").digest()


def _module(function: int, index: int, platform: int = 12, deps: tuple[Dependency, ...] = ()) -> bytes:
    return pack_module(
        b"m",
        platform_id=platform,
        function=ModuleFunction(function),
        index=index,
        start_address=0x1000 * (index + 1),
        dependencies=deps,
    )


def test_flash_order_bootloader_radio_system_then_app() -> None:
    names = {
        "app": _module(5, 1),
        "sys2": _module(4, 2),
        "boot": _module(2, 0),
        "radio": _module(8, 0),
        "sys1": _module(4, 1),
    }
    parsed = {k: parse_module(v) for k, v in names.items()}
    order = sorted(parsed, key=lambda k: flash_order_key(parsed[k]))
    assert order == ["boot", "radio", "sys1", "sys2", "app"]


def test_flash_order_follows_electron_chain_and_dependencies() -> None:
    parts = {i: parse_module(_module(4, i, platform=10)) for i in (1, 2, 3)}
    assert sorted(parts, key=lambda i: flash_order_key(parts[i])) == [3, 1, 2]
    # On another platform a part that depends on a higher index waits for it.
    low = parse_module(_module(4, 1, deps=(Dependency(4, 2, 1),)))
    high = parse_module(_module(4, 2))
    assert flash_order([low, high]) == [high, low]


def test_inflating_is_bounded() -> None:
    compressed = compress_module(pack_module(bytes(50_000), platform_id=12))
    with pytest.raises(FormatError, match="more than the 1000 allowed"):
        decompress_module(compressed, limit=1000)
    assert len(decompress_module(compressed)) > 50_000


def test_combined_files_are_bounded() -> None:
    small = pack_module(b"m", platform_id=12)
    assert len(split_combined(combine_modules([small] * 32))) == 32
    with pytest.raises(FormatError, match="more than 32 modules"):
        split_combined(combine_modules([small] * 33))
    module = parse_module(combine_modules([small] * 33))
    assert module.inner == () and module.inner_error is not None


def test_stamp_refuses_to_reseal_a_damaged_module() -> None:
    module = bytearray(pack_module(b"\x11" * 512, platform_id=6))
    module[100] ^= 0xFF
    with pytest.raises(FormatError, match="CRC-32 does not match"):
        stamp_product(bytes(module), product_id=5, product_version=1)
    # Damage confined to the stored SHA-256 (CRC recomputed over it) is caught too.
    sealed = bytearray(pack_module(b"\x11" * 512, platform_id=6))
    sealed[-20] ^= 0xFF
    from firmware_tools.particle.layout import CRC
    from firmware_tools.particle.seal import file_crc32

    sealed[-4:] = CRC.pack(file_crc32(bytes(sealed)))
    with pytest.raises(FormatError, match="SHA-256 does not match"):
        stamp_product(bytes(sealed), product_id=5, product_version=1)
