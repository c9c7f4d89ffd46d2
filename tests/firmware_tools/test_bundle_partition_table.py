"""ESP partition tables: parsing (real and built), hostile bytes, and carrying one in an ESP release."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools import keys
from firmware_tools.bundle import ImageKind, ReleaseInput, build_release, verify_stream
from firmware_tools.bundle.fwformat import FORMAT
from firmware_tools.bundle.partition_table import (
    MAX_TABLE_BYTES,
    Partition,
    build_partition_table,
    parse_partition_table,
)
from firmware_tools.errors import FormatError, UnsupportedError
from firmware_tools.esp import build_app_image
from tests.conftest import fixture_dir
from tests.firmware_tools.test_bundle_support import fixed_clock, rezip

LAYOUT = [
    Partition("nvs", 1, 2, 0x9000, 0x6000, 0),
    Partition("phy_init", 1, 1, 0xF000, 0x1000, 0),
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
]


def test_built_table_round_trips_with_md5() -> None:
    data = build_partition_table(LAYOUT)
    assert len(data) == MAX_TABLE_BYTES
    table = parse_partition_table(data)
    assert table.partitions == tuple(LAYOUT)
    assert table.md5_ok is True
    assert all(c.ok for c in table.checks())
    assert table.to_json()["partitions"][2] == {  # type: ignore[index]
        "label": "factory",
        "type": "app",
        "subtype": 0,
        "offset": 0x10000,
        "size": 0x100000,
        "flags": 0,
    }


def test_md5_mismatch_and_overlap_fail_their_checks() -> None:
    data = bytearray(build_partition_table(LAYOUT))
    data[4] ^= 0x10  # nvs offset
    assert parse_partition_table(bytes(data)).md5_ok is False
    clash = build_partition_table([*LAYOUT, Partition("ota_0", 0, 0x10, 0x80000, 0x100000, 0)])
    checks = {c.name: c for c in parse_partition_table(clash).checks()}
    assert checks["table-overlap"].ok is False
    assert "partition 'ota_0' at 0x80000 overlaps partition 'factory' at 0x10000" in checks["table-overlap"].reason


def test_real_esp_idf_table() -> None:
    path = fixture_dir("esp") / "partitions_singleapp.bin"
    if not path.exists():
        pytest.skip("partitions_singleapp.bin not in the corpus")
    table = parse_partition_table(path.read_bytes())
    assert [(p.label, p.offset) for p in table.partitions] == [
        ("factory", 0x10000),
        ("rfdata", 0x110000),
        ("wifidata", 0x150000),
    ]
    assert table.md5_ok is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no AA 50"),
        (b"\xaa\x50" + b"\x00" * 30 + b"junk", "not erased"),
        (b"\xaa\x50" + b"\x00" * 30 + b"\x00\x00" + b"\x00" * 30, "does not start with AA 50"),
        (b"\xff" * 32, "no AA 50"),
        (b"\xaa\x50" * (MAX_TABLE_BYTES // 2 + 1), "more than"),
    ],
)
def test_malformed_tables(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_partition_table(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_partition_table(b"\xaa\x50" + data)


def test_esp_release_with_partition_table_and_app() -> None:
    key = keys.generate_key()
    inputs = [
        ReleaseInput("app.bin", build_app_image(chip="esp32s3", version="1.2.3", payload_size=512), 0x10000),
        ReleaseInput("partitions.bin", build_partition_table(LAYOUT), 0x8000),
    ]
    release = build_release(inputs, product_id=5, product_version=1, key=key, product_name="x", clock=fixed_clock)
    entries = release.manifest.images
    assert [(e.name, e.kind, e.address) for e in entries] == [
        ("partitions.bin", ImageKind.ESP_PARTITION_TABLE, 0x8000),
        ("app.bin", ImageKind.ESP_APP, 0x10000),
    ]
    assert entries[0].esp is None and release.manifest.target.chip == "esp32s3"
    result = verify_stream(release.bundle, [key.public])
    assert result.ok, result.failed
    shown = FORMAT.inspect(release.bundle)["images"]
    assert isinstance(shown, list) and shown[0]["inspect"]["format"] == "esp-partition-table"
    assert "factory: type 0 subtype 0 at 0x10000" in "\n".join(FORMAT.summary(release.bundle))
    # Swapping in a different table is caught by its hash like any image.
    other = build_partition_table(LAYOUT[:2])
    assert not verify_stream(rezip(release.bundle, replace={"partitions.bin": other}), [key.public]).ok


def test_a_partition_table_alone_is_not_a_release() -> None:
    with pytest.raises(UnsupportedError, match="name the chip"):
        build_release(
            [ReleaseInput("p.bin", build_partition_table(LAYOUT), 0x8000)],
            product_id=1,
            product_version=1,
            key=keys.generate_key(),
            product_name="x",
        )
