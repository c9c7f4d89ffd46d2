"""Shared pieces for the cloud, sync and simulated-console tests: a console on loopback, a registry,
a fake clock. (No tests here; other test modules import from it, fixtures by their ``*_fixture`` name.)"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from station.cloud.backoff import RateLimiter
from station.cloud.client import ParticleCloud
from station.cloud.config import Timeouts
from station.cloud.token import AccessToken
from station.sim.console import RateLimit, SimConsole
from station.sim.console_http import ConsoleServer
from station.store import Registry
from station.store.outbox import enqueue_in

TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
PRODUCT = "4242"
SLUG = "acme-tracker"


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def device_ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:024x}" for i in range(start, start + n)]


def bulk_enqueue(registry: Registry, ids: Iterable[str], product: str = PRODUCT) -> None:
    """Queue many IDs in one transaction (one enqueue per transaction would fsync 100,000 times)."""
    with registry._writing() as (conn, now):
        for device_id in ids:
            enqueue_in(conn, device_id, product, None, now)


@dataclass
class Cloud:
    console: SimConsole
    server: ConsoleServer

    @property
    def url(self) -> str:
        return self.server.url

    def client(
        self,
        token: str = TOKEN,
        *,
        timeouts: Timeouts | None = None,
        limiter: RateLimiter | None = None,
    ) -> ParticleCloud:
        return ParticleCloud(
            AccessToken(token, source="test"),
            base_url=self.url,
            timeouts=timeouts or Timeouts(connect=5, read=5, write=5, pool=5),
            limiter=limiter,
        )


def start_cloud(*, rate_limit: RateLimit | None = None, clock: FakeClock | None = None, **kwargs: object) -> Cloud:
    console_kwargs: dict[str, Any] = dict(kwargs)
    if clock is not None:
        console_kwargs["clock"] = clock
    console = SimConsole.with_product(
        int(PRODUCT), TOKEN, slug=SLUG, platform_id=32, rate_limit=rate_limit, **console_kwargs
    )
    return Cloud(console, ConsoleServer(console).start())


@pytest.fixture(name="cloud")
def cloud_fixture() -> Iterator[Cloud]:
    c = start_cloud()
    try:
        yield c
    finally:
        c.server.stop()


@pytest.fixture(name="registry")
def registry_fixture(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "station.db")
    try:
        yield reg
    finally:
        reg.close()
