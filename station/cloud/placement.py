"""Putting imported devices into their batch group and giving them their names.

The group is created once if the product lacks it; each device then gets one
``PUT /v1/products/:product/devices/:id`` with its groups (the ones it had, plus the batch group) and
its name. Retryable failures back off through the caller's ``on_retry``; a 401/403 or an unknown
product ends the placement (``PlacementStopped`` with ``fatal``); a device the cloud refuses stays
pending with the error. Placing a device twice changes nothing, so a retry never does harm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from station.cloud.client import ParticleCloud
from station.cloud.errors import (
    CloudAuthError,
    CloudError,
    CloudNotFound,
    CloudRedirected,
    CloudRejected,
    CloudRetryable,
)

log = logging.getLogger("station.cloud.placement")

T = TypeVar("T")
# Resolve placed devices in the registry in chunks: one transaction per device would be slow.
_RESOLVE_EVERY = 50


@dataclass(frozen=True)
class Placement:
    """Where one imported device goes: ``group`` (None: none) and ``name`` (None: leave it)."""

    device_id: str
    group: str | None
    name: str | None
    new: bool  # imported just now (it has no groups yet); else it was already in the product


@dataclass(frozen=True)
class PlacementResult:
    placed: int
    requests: int
    failures: int
    refused: tuple[str, ...] = ()


@dataclass
class PlacementStopped(Exception):
    """Placement ended early: ``fatal`` for an auth / product error, else gave up or asked to stop."""

    why: str
    devices: int
    placed: int = 0
    requests: int = 0
    failures: int = 0
    fatal: CloudError | None = field(default=None)

    def __str__(self) -> str:
        return self.why


class _Calls:
    """One request with the worker's retry policy; counts requests and failures."""

    def __init__(
        self,
        on_retry: Callable[[CloudRetryable, int, int], None],
        stopping: Callable[[], bool],
        max_failures: int | None,
        on_error: Callable[[Sequence[str], str], None],
    ) -> None:
        self.on_retry = on_retry
        self.stopping = stopping
        self.max_failures = max_failures
        self.on_error = on_error
        self.requests = 0
        self.failures = 0
        self.placed = 0

    def run(self, fn: Callable[[], T], ids: Sequence[str]) -> T:
        consecutive = 0
        while True:
            if self.stopping():
                raise self._stopped("stopped on request", len(ids))
            self.requests += 1
            try:
                return fn()
            except CloudRetryable as exc:
                self.failures += 1
                consecutive += 1
                self.on_error(ids, f"group / name not set yet: {exc}")
                if self.max_failures is not None and consecutive >= self.max_failures:
                    raise self._stopped(
                        f"gave up after {consecutive} failed requests in a row; last: {exc}", len(ids)
                    ) from None
                self.on_retry(exc, consecutive, len(ids))
            except (CloudAuthError, CloudNotFound, CloudRedirected) as exc:
                self.failures += 1
                self.on_error(ids, str(exc))
                raise self._stopped(str(exc), len(ids), fatal=exc) from None

    def _stopped(self, why: str, devices: int, fatal: CloudError | None = None) -> PlacementStopped:
        return PlacementStopped(why, devices, self.placed, self.requests, self.failures, fatal)


def place_devices(
    client: ParticleCloud,
    product: str,
    placements: Sequence[Placement],
    *,
    on_retry: Callable[[CloudRetryable, int, int], None],
    stopping: Callable[[], bool],
    max_failures: int | None,
    on_placed: Callable[[Sequence[Placement]], None],
    on_error: Callable[[Sequence[str], str], None],
) -> PlacementResult:
    """Create the groups ``placements`` need, then update each device; ``on_placed`` records the
    devices done (in chunks, and before any exception leaves)."""
    calls = _Calls(on_retry, stopping, max_failures, on_error)
    all_ids = [p.device_id for p in placements]
    wanted = sorted({p.group for p in placements if p.group is not None})
    refused: list[str] = []
    unusable: set[str] = set()
    if wanted:
        try:
            existing = {g.name for g in calls.run(lambda: client.list_groups(product), all_ids)}
        except CloudRejected as exc:
            on_error(all_ids, f"cannot list the product's groups: {exc}")
            return PlacementResult(0, calls.requests, calls.failures + 1, tuple(all_ids))
        for group in wanted:
            if group in existing:
                continue
            ids = [p.device_id for p in placements if p.group == group]
            try:
                calls.run(_creator(client, product, group), ids)
                log.info("sync: created device group %s in product %s", group, product)
            except CloudRejected as exc:
                # Perhaps another station created it meanwhile: look again before giving up.
                if group not in {g.name for g in calls.run(lambda: client.list_groups(product), ids)}:
                    on_error(ids, f"cannot create group {group}: {exc}")
                    refused += ids
                    unusable.add(group)
    done: list[Placement] = []
    try:
        for p in placements:
            if p.group in unusable:
                continue
            try:
                _place_one(client, product, p, calls)
            except CloudRejected as exc:
                on_error([p.device_id], f"group / name refused: {exc}")
                refused.append(p.device_id)
                continue
            done.append(p)
            calls.placed += 1
            if len(done) >= _RESOLVE_EVERY:
                on_placed(done)
                done = []
    finally:
        if done:
            on_placed(done)
    return PlacementResult(calls.placed, calls.requests, calls.failures, tuple(refused))


def _creator(client: ParticleCloud, product: str, group: str) -> Callable[[], object]:
    return lambda: client.create_group(product, group, description="devices of one benchflash run")


def _place_one(client: ParticleCloud, product: str, p: Placement, calls: _Calls) -> None:
    groups: list[str] | None = None
    if p.group is not None:
        have: tuple[str, ...] = ()
        if not p.new:
            # Already in the product: keep the groups it has (assigning replaces the list).
            have = calls.run(lambda: client.get_device(product, p.device_id), [p.device_id]).groups
        if p.group in have and (p.name is None):
            return
        groups = list(dict.fromkeys((*have, p.group)))
    calls.run(lambda: client.update_device(product, p.device_id, groups=groups, name=p.name), [p.device_id])
