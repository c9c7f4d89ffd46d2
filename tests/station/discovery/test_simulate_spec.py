"""`--simulate SPEC` parsing: kinds, counts, faults; anything else is an InputError naming the bad part."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.demo.simulated_bench import MAX_PER_ENTRY, SimDeviceSpec, parse_simulate_spec, valid_kinds
from station.devices.base import Family
from station.errors import InputError
from station.sim.faults import Fault, FaultKind


def test_counts_expand_to_one_spec_per_board_in_order() -> None:
    specs = parse_simulate_spec("photon-dfu:2,esp32:1,argon-serial:1")
    assert [s.kind for s in specs] == ["photon-dfu", "photon-dfu", "esp32", "argon-serial"]
    assert specs[0] == SimDeviceSpec(Family.PARTICLE_DFU, "photon")
    assert specs[2].family is Family.ESP and specs[3].family is Family.PARTICLE_SERIAL


def test_count_defaults_to_one_and_spaces_and_case_are_forgiven() -> None:
    assert [s.kind for s in parse_simulate_spec(" Argon-DFU , esp32s3 ,esp32c3:2")] == [
        "argon-dfu",
        "esp32s3",
        "esp32c3",
        "esp32c3",
    ]


def test_faults_apply_to_every_board_of_their_entry() -> None:
    specs = parse_simulate_spec("argon-dfu:2!disconnect@3!stall,esp32!corrupt-reply@0x10")
    assert specs[0].faults == specs[1].faults == (Fault(FaultKind.DISCONNECT, 3), Fault(FaultKind.STALL))
    assert specs[2].faults == (Fault(FaultKind.CORRUPT_REPLY, 16),)
    assert str(specs[0]) == "argon-dfu!disconnect@3!stall"


def test_every_listed_kind_parses() -> None:
    kinds = valid_kinds()
    assert {"photon-dfu", "p1-dfu", "electron-dfu", "argon-dfu", "boron-dfu", "p2-dfu"} <= set(kinds)
    assert {"photon-serial", "argon-serial", "argon-normal", "esp32", "esp32s3", "esp32c3"} <= set(kinds)
    assert [s.kind for s in parse_simulate_spec(",".join(kinds))] == list(kinds)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "no devices"),
        ("argn-dfu:1", "argn-dfu"),
        ("photon-dfu:2,,esp32", "empty entry"),
        ("photon-usb:1", "photon-usb"),
        ("esp8266", "esp8266"),
        ("photon-dfu:0", "count"),
        (f"photon-dfu:{MAX_PER_ENTRY + 1}", "count"),
        ("photon-dfu:x", "photon-dfu:x"),
        ("argon-dfu!explode@3", "explode"),
        ("argon-dfu!", "empty fault"),
        ("argon-dfu!disconnect@zz", "disconnect@zz"),
    ],
)
def test_bad_specs_name_the_bad_part_and_list_the_kinds(spec: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_simulate_spec(spec)
    text = caught.value.one_line()
    assert named in text
    assert "argon-dfu" in text and "esp32c3" in text  # the valid kinds are listed
    assert caught.value.exit_code == 2


def test_too_many_boards_in_total_is_refused() -> None:
    with pytest.raises(InputError, match="more than"):
        parse_simulate_spec(",".join([f"esp32:{MAX_PER_ENTRY}"] * 5))


_ALPHABET = st.sampled_from(list("abcdefpstuvwxyz0123456789-:!@,. xX\u0661\u00e9\n"))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(_ALPHABET, max_size=60)))
def test_garbage_is_an_input_error_or_a_valid_bench(text: str) -> None:
    try:
        specs = parse_simulate_spec(text)
    except InputError:
        return
    assert len(specs) >= 1
    kinds = set(valid_kinds())
    assert all(s.kind in kinds for s in specs)
    assert all(f.at is None or f.at >= 0 for s in specs for f in s.faults)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(valid_kinds()), st.integers(1, 5), st.sampled_from(["", "!stall", "!disconnect@2"])),
        min_size=1,
        max_size=6,
    )
)
def test_well_formed_specs_round_trip(entries: list[tuple[str, int, str]]) -> None:
    text = ",".join(f"{kind}:{count}{fault}" for kind, count, fault in entries)
    specs = parse_simulate_spec(text)
    expected = [f"{kind}{fault}" for kind, count, fault in entries for _ in range(count)]
    assert [str(s) for s in specs] == expected
