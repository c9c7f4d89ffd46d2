"""Parsing the cloud's answers: import results (new and old forms), device pages; garbage refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.cloud.errors import CloudUnavailable
from station.cloud.models import DevicePage, ImportOutcome, ImportResult, ProductDevice

A, B, C, D, E, F = (f"{i:024x}" for i in range(6))


def test_newer_form_outcomes_case_insensitive() -> None:
    result = ImportResult.from_json(
        {
            "updated": 1,
            "updatedDeviceIds": [A],
            "existingDeviceIds": [B.upper()],
            "nonmemberDeviceIds": [C],
            "invalidDeviceIds": ["not-an-id"],
            "protectedDeviceIds": [D],
        }
    )
    outcomes = result.outcomes([A, B, C, D, "NOT-AN-ID", E])
    assert outcomes == {
        A: ImportOutcome.UPDATED,
        B: ImportOutcome.EXISTING,
        C: ImportOutcome.NONMEMBER,
        D: ImportOutcome.PROTECTED,
        "NOT-AN-ID": ImportOutcome.INVALID,
        E: ImportOutcome.UNMENTIONED,
    }
    assert outcomes[A].synced and outcomes[B].synced and not outcomes[C].synced


def test_older_form_not_rejected_means_accepted() -> None:
    result = ImportResult.from_json({"updated": 2, "nonmemberDeviceIds": [C], "invalidDeviceIds": []})
    assert result.outcomes([A, B, C]) == {
        A: ImportOutcome.UPDATED,
        B: ImportOutcome.UPDATED,
        C: ImportOutcome.NONMEMBER,
    }


def test_rejection_wins_over_acceptance() -> None:
    result = ImportResult.from_json({"updated": 1, "updatedDeviceIds": [A], "invalidDeviceIds": [A]})
    assert result.outcomes([A]) == {A: ImportOutcome.INVALID}
    result = ImportResult.from_json({"updated": 1, "existingDeviceIds": [A], "protectedDeviceIds": [A]})
    assert result.outcomes([A]) == {A: ImportOutcome.PROTECTED}


@pytest.mark.parametrize(
    "body",
    [
        [],
        "ok",
        {},
        {"updated": 0},
        {"updated": 3, "invalidDeviceIds": []},
        {"updated": -1},
        {"updated": True},
        {"updated": 1, "invalidDeviceIds": "abc"},
        {"updated": 1, "updatedDeviceIds": [1, 2]},
    ],
)
def test_unusable_import_answers(body: object) -> None:
    with pytest.raises(CloudUnavailable, match="unusable answer"):
        ImportResult.from_json(body)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([A, B, C, D, E, F]), unique=True, min_size=1),
    st.dictionaries(
        st.sampled_from(
            ["updatedDeviceIds", "existingDeviceIds", "nonmemberDeviceIds", "invalidDeviceIds", "protectedDeviceIds"]
        ),
        st.lists(st.sampled_from([A, B, C, D, E, F])),
    ),
)
def test_every_requested_id_gets_exactly_one_outcome(requested: list[str], lists: dict[str, list[str]]) -> None:
    lists = {"nonmemberDeviceIds": [], "invalidDeviceIds": [], **lists}
    result = ImportResult.from_json({"updated": 0, **lists})
    outcomes = result.outcomes(requested)
    assert list(outcomes) == requested
    for device, outcome in outcomes.items():
        named = {k for k, v in lists.items() if device in v}
        if not named:
            newer = "updatedDeviceIds" in lists or "existingDeviceIds" in lists
            assert outcome is (ImportOutcome.UNMENTIONED if newer else ImportOutcome.UPDATED)


def test_device_page() -> None:
    page = DevicePage.from_json(
        {
            "devices": [{"id": A, "platform_id": 32, "groups": ["beta", 3], "online": "yes", "development": True}],
            "customers": [],
            "meta": {"page": 2, "per_page": 1, "total_pages": 5, "total": 5},
        },
        asked_page=2,
    )
    assert page.total_pages == 5 and page.page == 2 and page.total == 5
    assert page.devices == (ProductDevice(id=A, platform_id=32, groups=("beta",), online=None, development=True),)


@pytest.mark.parametrize(
    "body",
    [
        {"devices": {}, "meta": {"total_pages": 1}},
        {"devices": []},
        {"devices": [], "meta": {"total_pages": "2"}},
        {"devices": [{"name": "x"}], "meta": {"total_pages": 1}},
    ],
)
def test_unusable_pages(body: object) -> None:
    with pytest.raises(CloudUnavailable):
        DevicePage.from_json(body, asked_page=1)
