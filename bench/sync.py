"""Cloud sync speed (issue 7 item 5): 100,000 queued IDs imported through the simulated console.

For a few batch sizes: wall seconds from a full outbox to an empty one, import requests used against
the fewest possible (ceil(IDs / batch)), the share of the documented 10,000 requests / 5 minutes
budget, and the station's wall time against what the console needs at the least (its own answering
time, plus a modelled round trip per request in the last run); the ratio is the station's own
overhead: registry transactions, building files, parsing answers, HTTP on loopback.
Run with `make bench` or `.venv/bin/python bench/sync.py [IDS]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts bench/ first on sys.path, where a script named like a standard module (there was an
# inspect.py, which click and httpx import) would shadow it: take the folder off before importing.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import math  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from station.cloud.client import ParticleCloud  # noqa: E402
from station.cloud.config import CloudConfig  # noqa: E402
from station.cloud.sync import SyncWorker  # noqa: E402
from station.cloud.token import AccessToken  # noqa: E402
from station.sim.console import (  # noqa: E402
    DOCUMENTED_RATE_LIMIT,
    DOCUMENTED_RATE_WINDOW,
    RateLimit,
    SimConsole,
    SimToken,
)
from station.sim.console_http import ApiRequest, ConsoleServer, Reply  # noqa: E402
from station.sim.console_state import SimProduct  # noqa: E402
from station.store import OutboxState, Registry  # noqa: E402
from station.store.outbox import enqueue_in  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef01234567"
PRODUCT = 4242
BATCH_SIZES = (100, 500, 2000)
ROUND_TRIP = 0.05  # seconds per request, a modelled factory-to-cloud round trip and import time


class TimedConsole(SimConsole):
    """The simulated console, adding up the time it spends answering."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.busy = 0.0
        self._busy_lock = threading.Lock()

    def handle(self, request: ApiRequest) -> Reply:
        start = time.perf_counter()
        try:
            return super().handle(request)
        finally:
            with self._busy_lock:
                self.busy += time.perf_counter() - start


def run(ids: int, batch_size: int, folder: Path, *, latency: float = 0.0) -> None:
    registry = Registry(folder / f"bench-{batch_size}-{latency}.db")
    with registry._writing() as (conn, now):  # one transaction: the bench times the sync, not the line
        for i in range(ids):
            enqueue_in(conn, f"{i:024x}", str(PRODUCT), None, now)
    console = TimedConsole(rate_limit=RateLimit(DOCUMENTED_RATE_LIMIT, DOCUMENTED_RATE_WINDOW), latency=latency)
    console.state.add_product(SimProduct(PRODUCT, "bench-product"))
    console.add_token(SimToken(TOKEN))
    with ConsoleServer(console) as server:
        config = CloudConfig(product=str(PRODUCT), base_url=server.url, batch_size=batch_size)
        with ParticleCloud.from_config(config, AccessToken(TOKEN, source="bench")) as client:
            worker = SyncWorker(registry.outbox, client, product=config.product, batch_size=batch_size)
            start = time.perf_counter()
            report = worker.drain()
            wall = time.perf_counter() - start
            waited = client.limiter.waited
    synced = registry.outbox.counts(str(PRODUCT))[OutboxState.SYNCED]
    registry.close()
    if synced != ids or not report.complete:
        raise SystemExit(f"batch {batch_size}: only {synced} of {ids} synced ({report.stopped})")
    fewest = math.ceil(ids / batch_size)
    stats = console.stats()
    # What the console needs at the least: its own work plus the modelled round trip per request.
    bound = console.busy + stats.requests * latency
    print(
        f"batch {batch_size:>5}, round trip {latency * 1000:3.0f} ms: {wall:6.2f} s, {ids / wall:7.0f} IDs/s; "
        f"{report.requests} requests (fewest {fewest}: {report.requests / fewest:.2f}x; "
        f"{report.requests / DOCUMENTED_RATE_LIMIT:.1%} of the 5-minute budget; "
        f"429s {stats.rate_limited}, limiter waited {waited:.1f} s); "
        f"console needs {bound:.2f} s: station wall {wall / bound:.2f}x that"
    )


def main() -> None:
    ids = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"sync of {ids} queued IDs into the simulated console on loopback (timing model off)")
    with tempfile.TemporaryDirectory() as folder:
        for batch_size in BATCH_SIZES:
            run(ids, batch_size, Path(folder))
        # With a modelled cloud round trip, the station's own work should hide under the network's.
        run(ids, 500, Path(folder), latency=ROUND_TRIP)


if __name__ == "__main__":
    main()
