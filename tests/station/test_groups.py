"""Group naming rules (the console's: lowercase a-z, 0-9, - and _, at most 64), the run's batch group,
the [cloud] group / device_names keys, and the device name mapping file."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.cloud.config import CloudConfig
from station.cloud.errors import CloudConfigError
from station.cloud.groups import (
    GroupNameError,
    batch_group,
    check_group_template,
    load_device_names,
    normalise_group_name,
    parse_device_names,
    station_slug,
)

CONSOLE_RULE = re.compile(r"[a-z0-9_-]{1,64}")
DAY = date(2026, 11, 26)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True))
def test_valid_names_pass_unchanged(name: str) -> None:
    assert normalise_group_name(name) == name


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.sampled_from(["", " ", "\t", "  \n"]))
def test_case_and_surrounding_space_are_normalised(name: str, pad: str) -> None:
    got = normalise_group_name(pad + name + pad)
    assert got == name.lower()
    assert normalise_group_name(got) == got  # idempotent


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_accepted_only_as_a_console_name(text: str) -> None:
    try:
        got = normalise_group_name(text)
    except GroupNameError as exc:
        assert exc.exit_code == 2
        assert "\n" not in str(exc)
        assert not CONSOLE_RULE.fullmatch(text.strip().lower())
    else:
        assert CONSOLE_RULE.fullmatch(got)
        assert got == text.strip().lower()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("line a", "' '"),
        ("batch.7", "'.'"),
        ("größe", "ö"),
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 65, "65 characters long, at most 64"),
    ],
)
def test_refusals_name_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(GroupNameError) as info:
        normalise_group_name(text, where="--group")
    message = str(info.value)
    assert says in message
    assert message.startswith("--group:")
    assert "lowercase letters, digits, - and _" in message


def test_exactly_64_characters_is_allowed() -> None:
    assert normalise_group_name("a" * 64) == "a" * 64


def test_default_batch_group_is_date_and_station() -> None:
    assert batch_group("{date}_{station}", station_id="bench-1", day=DAY) == "20261126_bench-1"
    assert batch_group("{date}_{station}", station_id="Line A.1", day=DAY) == "20261126_line-a-1"
    assert batch_group("pilot-{date}", station_id="x", day=DAY) == "pilot-20261126"
    assert batch_group("Pilot_Run", station_id="x", day=DAY) == "pilot_run"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_any_station_id_gives_a_console_name_or_a_clear_error(station: str) -> None:
    try:
        name = batch_group("{date}_{station}", station_id=station, day=DAY)
    except GroupNameError as exc:
        assert "at most 64" in str(exc) and "station_id" in str(exc)
        assert len(station_slug(station)) > 64 - len("20261126_")
    else:
        assert CONSOLE_RULE.fullmatch(name)
        assert name.startswith("20261126_")


def test_template_errors() -> None:
    with pytest.raises(GroupNameError, match=r"unknown placeholder\(s\) \{day\}"):
        batch_group("{day}_{station}", station_id="s", day=DAY)
    with pytest.raises(GroupNameError, match="'!'"):
        check_group_template("run!{date}")
    assert check_group_template("{date}-{station}") == "{date}-{station}"
    assert check_group_template(" Night_Shift ") == "night_shift"


def test_cloud_config_group_and_device_names(tmp_path: Path) -> None:
    default = CloudConfig.from_mapping({"product": 4242})
    assert default.group == "{date}_{station}"
    assert CloudConfig.from_mapping({"product": 4242, "group": False}).group is None
    assert CloudConfig.from_mapping({"product": 4242, "group": "Pilot"}).group == "pilot"
    cfg = CloudConfig.from_mapping({"product": 4242, "device_names": "serials.csv"}, base_dir=tmp_path)
    assert cfg.device_names == tmp_path / "serials.csv"
    with pytest.raises(CloudConfigError, match=r"line\.toml \[cloud\] group: group name 'bad name'"):
        CloudConfig.from_mapping({"product": 4242, "group": "bad name"}, where="line.toml [cloud]")
    with pytest.raises(CloudConfigError, match="group: must be a group name"):
        CloudConfig.from_mapping({"product": 4242, "group": 7})
    with pytest.raises(CloudConfigError, match="device_names"):
        CloudConfig.from_mapping({"product": 4242, "device_names": ""})


def test_device_name_mapping(tmp_path: Path) -> None:
    text = (
        "device_id,serial_number\n"
        "# label printer export\n"
        f"{'0a' * 12},P046-0001\n"
        f"{'0B' * 12}\tP046-0002   # tab separated\n"
        "\n"
    )
    names = parse_device_names(text, source="serials.csv")
    assert len(names) == 2
    assert names.name_for("0a" * 12) == "P046-0001"
    assert names.name_for("0B" * 12) == "P046-0002"
    assert names.name_for("0c" * 12) is None
    path = tmp_path / "serials.csv"
    path.write_text(text, encoding="utf-8")
    assert load_device_names(path).names == names.names


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("zzzz,P1\n", "serials.csv:1: 'zzzz' is not a 24-hex-digit device ID"),
        (f"{'0a' * 12},P 1,extra\n", "serials.csv:1: expected DEVICE_ID,NAME"),
        (f"{'0a' * 12},bad!name\n", "serials.csv:1: 'bad!name' is not a usable device name"),
        (f"{'0a' * 12},A\n{'0a' * 12},B\n", "serials.csv:2: device 0a0a0a0a0a0a0a0a0a0a0a0a is named twice"),
    ],
)
def test_device_name_mapping_errors(text: str, says: str) -> None:
    with pytest.raises(GroupNameError) as info:
        parse_device_names(text, source="serials.csv")
    assert says in str(info.value)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(GroupNameError, match="device name mapping not found"):
        load_device_names(tmp_path / "nope.csv")
