"""Property tests: whatever bytes come in, only FormatError leaves the ESP parser (hypothesis)."""

from __future__ import annotations

import contextlib
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_tools.checks import Expectations
from firmware_tools.errors import FirmwareError, FormatError
from firmware_tools.esp import build_app_image, parse_esp_image, set_app_version
from firmware_tools.esp.chips import CHIPS
from firmware_tools.esp.fwformat import FORMAT
from firmware_tools.esp.layout import EXTENDED_HEADER, HASH_APPENDED_OFFSET, HEADER

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _image() -> bytes:
    return build_app_image(chip="esp32", payload_size=600, seed=3)


def _parse_or_format_error(data: bytes) -> None:
    try:
        image = parse_esp_image(data)
    except FormatError:
        assert FORMAT.sniff(data) >= 0
        return
    # Whatever parses is claimed by sniffing, and inspects and validates without raising.
    assert FORMAT.sniff(data) > 0
    FORMAT.inspect(data)
    FORMAT.summary(data)
    FORMAT.validate(data, Expectations(chip="esp32", version="1.0.0"))
    assert image.size == len(data)


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse_or_format_error(data)


# Bytes that pass the header checks, so the search reaches segments, checksum and hash.
plausible_header = st.builds(
    lambda count, mode, size, chip, flag, tail: (
        HEADER.pack(0xE9, count, mode, (size << 4) | min(chip.flash_freqs), 0x40080000)
        + EXTENDED_HEADER.pack(0xEE, 0, 0, 0, chip.chip_id, 0, 0, 0, bytes(4), flag)
        + tail
    ),
    st.integers(1, 16),
    st.integers(0, 3),
    st.integers(0, 7),
    st.sampled_from(CHIPS),
    st.integers(0, 1),
    st.binary(max_size=1024),
)


@SETTINGS
@given(plausible_header)
def test_plausible_headers_with_arbitrary_bodies(data: bytes) -> None:
    _parse_or_format_error(data)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.just(0)),
)


def _mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in steps:
        pos = where % (len(out) + 1)
        if kind == "flip" and pos < len(out):
            out[pos] ^= value
        elif kind == "cut":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = bytes([value])
        elif kind == "delete":
            del out[pos : pos + 1]
    return bytes(out)


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_images(steps: list[tuple[str, int, int]]) -> None:
    data = _mutate(_image(), steps)
    _parse_or_format_error(data)
    # Refusals are fine; anything but a FirmwareError is a bug.
    with contextlib.suppress(FirmwareError):
        set_app_version(data, "2.0.0")


@SETTINGS
@given(st.integers(0, 10**6), st.integers(1, 255))
def test_any_flipped_byte_of_the_sealed_image_is_caught(where: int, mask: int) -> None:
    data = _image()
    image = parse_esp_image(data)
    pos = where % image.image_end
    # This byte says whether a hash follows: turning it off leaves a valid unhashed image (the
    # hash is a corruption check, not a seal of its own presence).
    if pos == HASH_APPENDED_OFFSET:
        return
    flipped = bytearray(data)
    flipped[pos] ^= mask
    try:
        report = FORMAT.validate(bytes(flipped), Expectations())
    except FormatError:
        return
    assert not report.ok


version_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=31
) | st.text(alphabet=st.characters(min_codepoint=0xA0, max_codepoint=0x2FF), min_size=1, max_size=15)


@SETTINGS
@given(version_text)
def test_set_version_round_trips(version: str) -> None:
    out = set_app_version(_image(), version)
    image = parse_esp_image(out)
    assert image.app is not None and image.app.version == version
    assert image.checksum_ok and image.sha256_ok
