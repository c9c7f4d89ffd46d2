"""The sync outbox as the cloud worker uses it (the contract in notes/outbox-api.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.store import InvalidRecord, Outbox, OutboxState, Registry, RunContext, Slot


class StepClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "station.db", clock=StepClock())
    yield reg
    reg.close()


def test_enqueue_is_idempotent_and_keeps_state(registry: Registry) -> None:
    outbox = Outbox(registry)
    outbox.enqueue("aa01", "acme")
    outbox.resolve("acme", {"aa01": (OutboxState.SYNCED, None)})
    outbox.enqueue("aa01", "acme", group="later")  # queued again after a re-flash: result unchanged
    [entry] = outbox.entries()
    assert (entry.state, entry.group, entry.enqueued_at) == (OutboxState.SYNCED, None, 1001.0)
    outbox.enqueue("aa01", "other-product")  # another product is another row
    assert outbox.counts("other-product")[OutboxState.PENDING] == 1


def test_enqueue_many_is_one_idempotent_transaction(registry: Registry) -> None:
    outbox = registry.outbox
    outbox.enqueue("d1", "acme")
    assert outbox.enqueue_many([f"d{i}" for i in range(5)], "acme", group="g") == 4
    assert outbox.enqueue_many(["d1", "d2"], "acme") == 0
    entries = outbox.entries()
    assert [e.device_id for e in entries] == ["d1", "d0", "d2", "d3", "d4"]
    assert len({e.enqueued_at for e in entries[1:]}) == 1  # one transaction, one time
    with pytest.raises(InvalidRecord):
        outbox.enqueue_many(["ok", "not ok"], "acme")
    assert len(outbox.entries()) == 5  # nothing of a refused batch is queued


def test_pending_is_oldest_first_per_product_with_a_limit(registry: Registry) -> None:
    outbox = registry.outbox
    for i in range(5):
        outbox.enqueue(f"d{i}", "acme" if i % 2 == 0 else "beta")
    assert [e.device_id for e in outbox.pending()] == ["d0", "d1", "d2", "d3", "d4"]
    assert [e.device_id for e in outbox.pending("acme", limit=2)] == ["d0", "d2"]
    assert outbox.pending(limit=0) == []
    outbox.resolve("acme", {"d0": (OutboxState.SYNCED, None)})
    assert [e.device_id for e in outbox.pending("acme")] == ["d2", "d4"]


def test_resolve_sets_every_state_in_one_call(registry: Registry) -> None:
    outbox = registry.outbox
    for device in ("ok1", "inv", "nonmember", "prot", "unsent"):
        outbox.enqueue(device, "acme")
    outbox.resolve(
        "acme",
        {
            "ok1": (OutboxState.SYNCED, None),
            "inv": (OutboxState.INVALID, "invalid device ID"),
            "nonmember": (OutboxState.NEEDS_ATTENTION, "claimed by an account outside the team"),
            "prot": (OutboxState.PROTECTED, None),
            "not-queued": (OutboxState.SYNCED, None),  # an ID the cloud echoes that we never queued
        },
    )
    counts = outbox.counts()
    assert counts == {
        OutboxState.PENDING: 1,
        OutboxState.SYNCED: 1,
        OutboxState.INVALID: 1,
        OutboxState.NEEDS_ATTENTION: 1,
        OutboxState.PROTECTED: 1,
    }
    [attention] = outbox.entries(state=OutboxState.NEEDS_ATTENTION)
    assert attention.device_id == "nonmember" and attention.last_error == "claimed by an account outside the team"


def test_note_error_counts_tries_and_never_touches_an_answer(registry: Registry) -> None:
    outbox = registry.outbox
    outbox.enqueue("a", "acme")
    outbox.enqueue("b", "acme")
    outbox.resolve("acme", {"b": (OutboxState.SYNCED, None)})
    outbox.note_error("acme", ["a", "b"], "HTTP 503")
    outbox.note_error("acme", ["a"], "timed out after 30 s")
    a, b = outbox.entries(product="acme")
    assert (a.state, a.tries, a.last_error) == (OutboxState.PENDING, 2, "timed out after 30 s")
    assert (b.state, b.tries, b.last_error) == (OutboxState.SYNCED, 0, None)
    assert a.updated_at > a.enqueued_at


def test_ids_that_would_break_the_import_file_are_refused(registry: Registry) -> None:
    for bad in ("", "a b", "a\nb"):
        with pytest.raises(InvalidRecord):
            registry.outbox.enqueue(bad, "acme")
    registry.outbox.enqueue("NOT-HEX-but-one-word", "acme")  # the cloud judges it invalid, not us


def test_a_pass_and_its_queued_import_commit_together(registry: Registry) -> None:
    attempt = registry.start_attempt(Slot("1-1"), RunContext("bench"))
    registry.identify(attempt, "ee05", "photon")
    # An enqueue that fails (empty product) rolls the PASS back with it.
    with pytest.raises(Exception, match="product must not be empty"):
        registry.finish_attempt(attempt, "pass", enqueue_product="")
    assert registry.attempt(attempt).result.value == "running"
    assert registry.outbox.entries() == []
    registry.finish_attempt(attempt, "pass", enqueue_product="acme")
    assert [e.device_id for e in registry.outbox.pending("acme")] == ["ee05"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["enqueue", "resolve", "error"]),
            st.sampled_from(["d1", "d2", "d3", "d4"]),
            st.sampled_from(list(OutboxState)),
        ),
        max_size=30,
    )
)
def test_retrying_never_changes_a_recorded_answer(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, OutboxState]]
) -> None:
    """Model check: enqueue and note_error leave answered rows alone; resolve is the only way to change state."""
    with Registry(tmp_path_factory.mktemp("ob") / "station.db") as reg:
        outbox = reg.outbox
        model: dict[str, OutboxState] = {}
        for op, device, state in ops:
            if op == "enqueue":
                outbox.enqueue(device, "p")
                model.setdefault(device, OutboxState.PENDING)
            elif op == "resolve":
                outbox.resolve("p", {device: (state, None)})
                if device in model:
                    model[device] = state
            else:
                outbox.note_error("p", [device], "boom")
        assert {e.device_id: e.state for e in outbox.entries()} == model
