"""Property tests: the parser only ever raises FormatError, and pack / stamp / compress round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware_tools.checks import Expectations
from firmware_tools.errors import FirmwareError, FormatError
from firmware_tools.particle import (
    Dependency,
    ModuleFunction,
    combine_modules,
    compress_module,
    decompress_module,
    module_json,
    pack_module,
    parse_module,
    split_combined,
    stamp_product,
    summary_lines,
    validate_module,
)
from firmware_tools.particle.constants import RTL872X_USER_PART_END
from tests.conftest import fixture_files

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PACKABLE = [6, 8, 10, 12, 13, 14, 15, 23, 26, 32, 35]
# Small fixtures keep each example fast; together they cover every prefix offset and suffix layout.
SMALL_FIXTURES = [p for p in fixture_files("particle") if p.stat().st_size <= 60_000]


def _exercise(data: bytes) -> None:
    """Parse, and if that works, everything built on a parse; only FormatError may escape."""
    try:
        module = parse_module(data, name="fuzz.bin")
    except FormatError:
        return
    module_json(module)
    summary_lines(module)
    validate_module(data, Expectations(platform=12, product_id=1, product_version=2))


@st.composite
def packed(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    platform = draw(st.sampled_from(PACKABLE))
    payload = draw(st.binary(max_size=2048))
    with_product = draw(st.booleans()) or platform in (32, 35)
    product_id = draw(st.integers(0, 0xFFFF)) if with_product else None
    product_version = draw(st.integers(0, 0xFFFF)) if with_product else None
    deps = draw(
        st.lists(
            st.builds(Dependency, st.sampled_from([2, 4, 7, 8]), st.integers(0, 255), st.integers(0, 0xFFFF)),
            max_size=2,
        )
    )
    index = draw(st.sampled_from([1, 2])) if platform not in (6, 8, 10) else 1
    args: dict[str, object] = dict(
        platform_id=platform,
        index=index,
        product_id=product_id,
        product_version=product_version,
        dependencies=deps,
        module_version=draw(st.integers(0, 0xFFFF)),
    )
    return pack_module(payload, **args), {**args, "payload": payload}  # type: ignore[arg-type]


@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_format_error(data: bytes) -> None:
    _exercise(data)


@SETTINGS
@given(st.binary(min_size=44, max_size=512), st.sampled_from([0, 0x20, 0x184, 0x200]))
def test_plausible_prefixes_raise_only_format_error(tail: bytes, offset: int) -> None:
    # A prefix-shaped start makes the parser go much further than random bytes do.
    head = pack_module(b"", platform_id=12)[:24]
    data = bytes(offset) + head + tail
    _exercise(data)


@pytest.mark.skipif(not SMALL_FIXTURES, reason="reference corpus not found (set BENCHFLASH_FIXTURES)")
@SETTINGS
@given(st.data())
def test_mutated_fixtures_raise_only_format_error(data: st.DataObject) -> None:
    path: Path = data.draw(st.sampled_from(SMALL_FIXTURES))
    original = bytearray(path.read_bytes())
    assume(original)
    _mutate(data, original)
    _exercise(bytes(original))


@SETTINGS
@given(packed(), st.data())
def test_mutated_packed_modules_raise_only_format_error(
    module: tuple[bytes, dict[str, object]], data: st.DataObject
) -> None:
    buf = bytearray(module[0])
    if data.draw(st.booleans()):
        buf = bytearray(compress_module(bytes(buf)))
    _mutate(data, buf)
    _exercise(bytes(buf))


def _mutate(data: st.DataObject, buf: bytearray) -> None:
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "tail"]))
        if not buf:
            break
        if kind == "flip":
            pos = data.draw(st.integers(0, len(buf) - 1))
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "tail":
            # The suffix and CRC live at the end: hit them often.
            pos = len(buf) - 1 - data.draw(st.integers(0, min(len(buf) - 1, 200)))
            buf[pos] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            del buf[data.draw(st.integers(0, len(buf) - 1)) :]
        else:
            buf.extend(data.draw(st.binary(max_size=64)))


@SETTINGS
@given(packed())
def test_pack_then_parse_round_trips(module: tuple[bytes, dict[str, object]]) -> None:
    data, args = module
    parsed = parse_module(data)
    assert parsed.crc_ok and parsed.sha_file_ok and parsed.size_ok
    assert parsed.prefix_offset == 0
    assert parsed.platform_id == args["platform_id"]
    assert parsed.function == ModuleFunction.USER_PART
    assert parsed.prefix.index == args["index"]
    assert parsed.prefix.module_version == args["module_version"]
    assert list(parsed.prefix.dependencies) == args["dependencies"]
    expect_id = args["product_id"]
    if args["platform_id"] in (32, 35) and expect_id is None:
        expect_id = 0xFFFF
    assert parsed.suffix.product_id == expect_id
    payload = args["payload"]
    assert isinstance(payload, bytes)
    body = data[parsed.prefix_size : parsed.size - 4 - parsed.suffix.suffix_size]
    assert body[: len(payload)] == payload
    if args["platform_id"] in (32, 35):
        assert parsed.prefix.end_address == RTL872X_USER_PART_END
        assert parsed.prefix.start_address % 0x1000 == 0
        assert parsed.suffix.suffix_size == 62
    assert validate_module(data, Expectations(platform=int(args["platform_id"]))).ok


@SETTINGS
@given(packed(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.booleans())
def test_stamp_then_parse_returns_what_was_set(
    module: tuple[bytes, dict[str, object]], product_id: int, product_version: int, keep_id: bool
) -> None:
    data = module[0]
    before = parse_module(data)
    if before.suffix.product_id is None:
        with pytest.raises(FirmwareError, match="no product id"):
            stamp_product(data, product_id=product_id, product_version=product_version)
        return
    stamped = stamp_product(data, product_id=None if keep_id else product_id, product_version=product_version)
    after = parse_module(stamped)
    want_id = before.suffix.product_id if keep_id else product_id
    assert (after.suffix.product_id, after.suffix.product_version) == (want_id, product_version)
    assert after.crc_ok and after.sha_file_ok and after.size_ok
    changed = [i for i, (a, b) in enumerate(zip(data, stamped, strict=True)) if a != b]
    n = len(data)
    assert all(n - 44 <= i < n - 40 or n - 38 <= i < n - 6 or i >= n - 4 for i in changed)


@SETTINGS
@given(packed())
def test_compress_then_decompress_round_trips(module: tuple[bytes, dict[str, object]]) -> None:
    data = module[0]
    compressed = compress_module(data)
    outer = parse_module(compressed)
    assert outer.is_compressed and outer.crc_ok and outer.sha_file_ok and outer.size_ok
    assert decompress_module(compressed) == data
    assert outer.inner[0].sha256_computed == parse_module(data).sha256_computed


@settings(max_examples=50, deadline=None)
@given(st.lists(packed(), min_size=2, max_size=4))
def test_combine_then_split_round_trips(modules: list[tuple[bytes, dict[str, object]]]) -> None:
    datas = [m[0] for m in modules]
    combined = combine_modules(datas)
    parts = split_combined(combined)
    assert len(parts) == len(datas)
    assert parts[-1] == datas[-1]
    outer = parse_module(combined)
    assert len(outer.inner) == len(datas)
    assert all(m.crc_ok and m.sha_file_ok for m in outer.inner)
    assert validate_module(combined, Expectations()).ok
