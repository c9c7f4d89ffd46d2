"""Memory-map strings: the ones Particle bootloaders send, page arithmetic, and round trips."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.protocols.memory_map import (
    MemoryMap,
    MemoryMapError,
    Segment,
    format_memory_map,
    parse_memory_map,
)

GEN2 = "@Internal Flash   /0x08000000/03*016Ka,01*016Kg,01*064Kg,07*128Kg"
GEN3 = "@Internal Flash   /0x00000000/1*004Ka,47*004Kg,192*004Kg,4*004Kg,4*004Kg,8*004Ka"
P2 = "@Internal Flash   /0x08000000/2048*004Kg"
DCT3 = "@DCT Flash   /0x00000000/1*016Ke"


def test_gen2_internal_flash_sectors() -> None:
    memory = parse_memory_map(GEN2)
    assert memory.name == "Internal Flash"
    starts = [(s.start, s.page_size, s.count) for s in memory.segments]
    assert starts == [
        (0x08000000, 0x4000, 3),
        (0x0800C000, 0x4000, 1),
        (0x08010000, 0x10000, 1),
        (0x08020000, 0x20000, 7),
    ]
    assert memory.segments[-1].end == 0x08100000
    first = memory.segments[0]
    assert (first.readable, first.erasable, first.writable) == (True, False, False)
    assert all(s.readable and s.erasable and s.writable for s in memory.segments[1:])


def test_pages_cover_exactly_the_touched_sectors() -> None:
    memory = parse_memory_map(GEN2)
    # A Photon user part: 0x080A0000 + 5000 bytes lies in one 128 KiB sector.
    assert list(memory.pages(0x080A0000, 5000)) == [(0x080A0000, 0x20000)]
    # Crossing from the 64 KiB sector into the first 128 KiB one.
    assert list(memory.pages(0x0801FFFF, 2)) == [(0x08010000, 0x10000), (0x08020000, 0x20000)]
    gen3 = parse_memory_map(GEN3)
    assert list(gen3.pages(0xB4000, 4096)) == [(0xB4000, 4096)]
    assert list(gen3.pages(0xB4001, 4096)) == [(0xB4000, 4096), (0xB5000, 4096)]
    assert list(gen3.pages(0xB4000, 0)) == []
    with pytest.raises(MemoryMapError):
        list(gen3.pages(0x100000 - 10, 20))


def test_covers_and_properties() -> None:
    gen3 = parse_memory_map(GEN3)
    assert gen3.covers(0xB4000, 0x40000, writable=True)
    assert not gen3.covers(0x0, 16, writable=True)  # the MBR page is read-only
    assert gen3.covers(0x0, 16, readable=True)
    assert not gen3.covers(0xFF000, 0x2000)
    dct = parse_memory_map(DCT3)
    assert dct.covers(0, 0x4000, writable=True)
    assert not dct.segments[0].erasable
    assert not parse_memory_map(P2).protected
    assert parse_memory_map("@Internal Flash   /0x08000000/2048*004Kb").protected


@pytest.mark.parametrize(
    "text",
    [
        "Internal Flash/0x0/1*4Kg",  # no '@'
        "@Flash",  # no segments
        "@Flash/0x0",
        "@Flash/zz/1*4Kg",
        "@Flash/0x0/1*4Kz",
        "@Flash/0x0/0*4Kg",
        "@Flash/0xFFFFF000/2*4Kg",  # past 4 GiB
        "@Flash/0x1000/1*4Kg/0x0/2*4Kg",  # overlap
        "@" + "x" * 2000,
    ],
)
def test_bad_strings_are_refused(text: str) -> None:
    with pytest.raises(MemoryMapError):
        parse_memory_map(text)


_segments = st.lists(
    st.tuples(
        st.integers(1, 64),
        st.sampled_from([256, 1024, 4096, 16384, 65536, 131072]),
        st.integers(1, 7),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(start=st.integers(0, 0x7FFFFFFF).map(lambda a: a & ~0xFFF), layout=_segments)
def test_format_then_parse_round_trips(start: int, layout: list[tuple[int, int, int]]) -> None:
    segments = []
    address = start
    for count, size, bits in layout:
        segments.append(Segment(address, size, count, bool(bits & 1), bool(bits & 2), bool(bits & 4)))
        address += count * size
    memory = MemoryMap("Flash", tuple(segments))
    assert parse_memory_map(format_memory_map(memory)) == memory


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_memory_map_error(text: str) -> None:
    with contextlib.suppress(MemoryMapError):
        parse_memory_map(text)


@settings(max_examples=100, deadline=None)
@given(offset=st.integers(0, 0xFFFFF), length=st.integers(1, 0x8000))
def test_pages_are_contiguous_and_cover_the_range(offset: int, length: int) -> None:
    memory = parse_memory_map(GEN2)
    start = 0x08000000 + offset
    if start + length > 0x08100000:
        return
    pages = list(memory.pages(start, length))
    assert pages[0][0] <= start
    assert pages[-1][0] + pages[-1][1] >= start + length
    for (a, size), (b, _) in itertools.pairwise(pages):
        assert a + size == b
