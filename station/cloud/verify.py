"""``station sync --verify``: list the product's devices page by page and compare them with what the
registry believes it synced."""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.cloud.backoff import Backoff
from station.cloud.client import ParticleCloud
from station.cloud.errors import CloudRetryable
from station.cloud.models import DevicePage
from station.store.outbox import Outbox, OutboxState

log = logging.getLogger("station.cloud.verify")

# Large pages keep the request count down; the API may cap it lower (the client follows total_pages).
DEFAULT_PER_PAGE = 100


@dataclass(frozen=True)
class VerifyReport:
    product: str
    listed: int  # devices the product lists
    believed_synced: int  # registry rows for the product in state synced
    missing: tuple[str, ...]  # the registry says synced, the product does not list them
    listed_but_pending: tuple[str, ...]  # already in the product, still pending here (the next sync settles it)
    requests: int

    @property
    def ok(self) -> bool:
        return not self.missing


def verify_product(
    outbox: Outbox,
    client: ParticleCloud,
    product: str,
    *,
    per_page: int = DEFAULT_PER_PAGE,
    backoff: Backoff | None = None,
    max_failures: int = 8,
    sleep: Callable[[float], None] = time.sleep,
    random: Callable[[], float] = _random.random,
) -> VerifyReport:
    """Compare the product's device list with the outbox; transient failures retry with backoff."""
    policy = backoff or Backoff()
    requests = 0

    def fetch(page: int) -> DevicePage:
        nonlocal requests
        failures = 0
        while True:
            requests += 1
            try:
                return client.list_devices(product, page=page, per_page=per_page)
            except CloudRetryable as exc:
                failures += 1
                if failures >= max_failures:
                    raise
                wait = policy.delay(failures - 1, retry_after=getattr(exc, "retry_after", None), random=random)
                log.warning("verify: %s; retrying in %.1f s", exc, wait)
                sleep(wait)

    listed = {d.id.strip().lower() for d in client.iter_devices(product, per_page=per_page, fetch=fetch)}
    synced = outbox.entries(state=OutboxState.SYNCED, product=product)
    pending = outbox.entries(state=OutboxState.PENDING, product=product)
    return VerifyReport(
        product=product,
        listed=len(listed),
        believed_synced=len(synced),
        missing=tuple(e.device_id for e in synced if e.device_id.strip().lower() not in listed),
        listed_but_pending=tuple(e.device_id for e in pending if e.device_id.strip().lower() in listed),
        requests=requests,
    )
