"""Whatever bytes reach fwtool, detection and every format's inspect, summary and validate either work
or raise the package's error: the CLI can then always answer with one line and exit 2."""

from __future__ import annotations

import contextlib
import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_tools.bundle.partition_table import Partition, build_partition_table
from firmware_tools.checks import Expectations
from firmware_tools.errors import FirmwareError
from firmware_tools.esp import build_app_image
from firmware_tools.formats import detect
from firmware_tools.particle import pack_module

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXPECT = Expectations(platform=12, product_id=5, product_version=1, chip="esp32", version="1.0")


@functools.cache
def samples() -> tuple[bytes, ...]:
    return (
        pack_module(bytes(range(256)) * 4, platform_id=12, product_id=5, product_version=1),
        build_app_image(chip="esp32", payload_size=512),
        build_partition_table([Partition("factory", 0, 0, 0x10000, 0x100000, 0)]),
    )


def exercise(data: bytes) -> None:
    try:
        fmt = detect(data, name="x.bin")
    except FirmwareError:
        return
    for operation in (fmt.inspect, fmt.summary, lambda d: fmt.validate(d, EXPECT)):
        with contextlib.suppress(FirmwareError):
            operation(data)


@SETTINGS
@given(st.sampled_from([b"", b"\xe9", b"\xaa\x50", b"PK\x03\x04", b":10"]), st.binary(max_size=4096))
def test_arbitrary_bytes_behind_each_format_s_magic(magic: bytes, tail: bytes) -> None:
    exercise(magic + tail)


@SETTINGS
@given(st.data())
def test_mutated_files_of_every_format(data: st.DataObject) -> None:
    buf = bytearray(data.draw(st.sampled_from(samples())))
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(buf) - 1))
        buf[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(buf)))
    exercise(bytes(buf[:cut]))
