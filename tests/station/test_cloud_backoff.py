"""Backoff delays, Retry-After parsing, and the client-side rate limiter (fake clock)."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.cloud.backoff import MAX_RETRY_AFTER, Backoff, RateLimiter, parse_retry_after
from tests.station.test_cloud_fixtures import FakeClock


def test_exponential_with_jitter_and_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    low = [backoff.delay(n, random=lambda: 0.0) for n in range(10)]
    high = [backoff.delay(n, random=lambda: 1.0) for n in range(10)]
    assert low[:4] == [0.5, 1.0, 2.0, 4.0]
    assert high[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(high) == 60.0 and low[-1] == 30.0


def test_retry_after_wins_and_is_bounded() -> None:
    backoff = Backoff(base=1.0)
    assert 12.0 <= backoff.delay(0, retry_after=12.0, random=lambda: 0.5) <= 13.0
    assert backoff.delay(3, retry_after=10**9, random=lambda: 0.0) == MAX_RETRY_AFTER


def test_parse_retry_after() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("99999999999999999999") == MAX_RETRY_AFTER
    date = email.utils.formatdate(1_000_045.0, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000.0) == 45.0
    assert parse_retry_after(email.utils.formatdate(10.0, usegmt=True), now=lambda: 1_000.0) == 0.0


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(text: str) -> None:
    value = parse_retry_after(text)
    assert value is None or 0 <= value <= MAX_RETRY_AFTER


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(1, 20),
    window=st.floats(0.5, 100),
    gaps=st.lists(st.floats(0, 10), min_size=1, max_size=120),
)
def test_limiter_never_exceeds_the_budget(limit: int, window: float, gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit, window, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for gap in gaps:
        clock.now += gap
        limiter.acquire()
        sent.append(clock.now)
    for i, t in enumerate(sent):
        in_window = [s for s in sent[: i + 1] if s > t - window]
        assert len(in_window) <= limit


def test_limiter_waits_only_when_full() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(3, 60.0, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == pytest.approx(60.0)
    assert clock.now == pytest.approx(60.0)
    assert limiter.in_window() == 1  # the first three left the window as the fourth went out
