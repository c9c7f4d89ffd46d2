"""The sync worker: drains the outbox into the product, batch by batch, offline-first.

A row changes state only after a parsed answer. Retryable failures (429, 5xx, timeouts, dropped
connections, unreadable answers) count a try on the batch and back off; 401/403 and an unknown
product stop the worker (no retry can help); a refused batch (400) is split in halves to find the
IDs the cloud will not take, and those stay pending with the error, skipped for the rest of the run.
Importing a device already in the product counts as synced, so resending after a lost answer or a
crash never changes a result.

When the queued rows name a device group (the run's batch group) or the worker has a device name
mapping, an imported device is marked synced only once it is also in its group and named
(``placement.py``): until then it stays pending, and the next drain imports it again (answered
"existing") and places it, so a lost answer or a crash never leaves a device outside its group.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

from station.cloud.backoff import Backoff
from station.cloud.client import ParticleCloud
from station.cloud.config import CloudConfig
from station.cloud.errors import (
    CloudAuthError,
    CloudError,
    CloudNotFound,
    CloudRedirected,
    CloudRejected,
    CloudRetryable,
)
from station.cloud.groups import load_device_names
from station.cloud.models import ImportOutcome, ImportResult
from station.cloud.placement import Placement, PlacementStopped, place_devices
from station.cloud.serial_names import NameSource, SerialNames
from station.cloud.token import AccessToken
from station.store.outbox import Outbox, OutboxState

log = logging.getLogger("station.cloud.sync")

# What `station sync` tolerates before it stops and leaves the rest for the next run.
DEFAULT_MAX_FAILURES = 8

_STATE_FOR: Mapping[ImportOutcome, tuple[OutboxState, str | None]] = {
    ImportOutcome.UPDATED: (OutboxState.SYNCED, None),
    ImportOutcome.EXISTING: (OutboxState.SYNCED, None),
    ImportOutcome.INVALID: (
        OutboxState.INVALID,
        "the cloud calls this ID invalid: malformed, or a device of another platform",
    ),
    ImportOutcome.NONMEMBER: (
        OutboxState.NEEDS_ATTENTION,
        "claimed by an account outside the product team: have it unclaimed, then import it again",
    ),
    ImportOutcome.PROTECTED: (OutboxState.PROTECTED, "the cloud reports this device as protected"),
}
UNMENTIONED_ERROR = "the cloud's answer did not mention this ID; it stays pending"


class SyncEventKind(StrEnum):
    BATCH = "sync-batch"  # a batch was answered
    RETRY = "sync-retry"  # a request failed and will be retried after `wait`
    REJECTED = "sync-rejected"  # the cloud refused a batch (400)
    STOPPED = "sync-stopped"  # the worker stopped: auth, unknown product, or gave up


@dataclass(frozen=True)
class SyncEvent:
    """What the worker tells a line's event sinks. Carries no token (messages are the client's, redacted)."""

    kind: SyncEventKind
    product: str
    devices: int  # devices in the batch concerned
    outcomes: Mapping[str, int] = field(default_factory=dict)  # ImportOutcome value -> count
    message: str = ""
    wait: float | None = None


@dataclass(frozen=True)
class DrainReport:
    """What one drain did."""

    product: str
    requests: int = 0  # import requests sent
    devices_sent: int = 0
    outcomes: Mapping[ImportOutcome, int] = field(default_factory=dict)
    failures: int = 0  # requests that got no parsed answer
    rejected: tuple[str, ...] = ()  # IDs the cloud refused one by one (400); still pending
    unmentioned: tuple[str, ...] = ()  # IDs an answer left out; still pending
    stopped: str | None = None  # why the drain ended before the queue was empty
    fatal: CloudError | None = None  # an auth / product error: no point retrying until fixed
    placed: int = 0  # imported devices put into their group and/or named
    place_requests: int = 0  # group and device update requests sent

    @property
    def complete(self) -> bool:
        return self.stopped is None and not self.rejected and not self.unmentioned


@dataclass
class _Tally:
    requests: int = 0
    devices_sent: int = 0
    outcomes: Counter[ImportOutcome] = field(default_factory=Counter)
    failures: int = 0
    rejected: list[str] = field(default_factory=list)
    unmentioned: list[str] = field(default_factory=list)
    to_place: list[Placement] = field(default_factory=list)
    placed: int = 0
    place_requests: int = 0


class SyncWorker:
    """Imports the outbox's pending devices for ``product`` through ``client``.

    ``sleep``/``random`` are injectable; a background thread passes ``stop`` to ``drain`` so that a
    backoff wait ends at once when the line shuts down.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: ParticleCloud,
        *,
        product: str,
        batch_size: int = 500,
        import_sims: bool = False,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        on_event: Callable[[SyncEvent], None] | None = None,
        device_names: NameSource | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.outbox = outbox
        self.client = client
        self.product = product
        self.batch_size = batch_size
        self.import_sims = import_sims
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._random = random
        self._on_event = on_event
        self.device_names = device_names
        self._group_of: dict[str, str | None] = {}
        # IDs the cloud refused (400) one by one: a refusal of the request itself does not pass, so
        # the next drains of this worker (the line's thread) go past them instead of stopping at them
        # again. They stay pending with the error; `station sync` (a new worker) tries them again.
        self._refused_alone: set[str] = set()

    def backlog(self) -> int:
        return self.outbox.counts(self.product)[OutboxState.PENDING]

    def drain(
        self, *, stop: threading.Event | None = None, max_failures: int | None = DEFAULT_MAX_FAILURES
    ) -> DrainReport:
        """Send pending devices until none are left, ``stop`` is set, a fatal error, or
        ``max_failures`` consecutive failed requests (None: keep retrying, as the line's thread does).

        While one batch is on the wire the next is read from the outbox, and it is sent as soon as
        the answer arrives, before that answer is recorded: registry work hides under network time.
        """
        tally = _Tally()
        self._group_of = {}
        skip: set[str] = set(self._refused_alone)
        splits: deque[list[str]] = deque()  # halves of a refused batch, sent before new batches
        consecutive = 0
        # A cloud that refuses every request (not some IDs) would otherwise be asked twice per device.
        refused_alone = 0
        refusal_limit = max_failures if max_failures is not None else DEFAULT_MAX_FAILURES

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-send") as sender:
            inflight: tuple[list[str], bool, Future[ImportResult]] | None = None
            while True:
                if inflight is None:
                    if stopping():
                        return self._report(tally, stopped="stopped on request")
                    from_split = bool(splits)
                    batch = splits.popleft() if from_split else self._next_batch(skip)
                    if not batch:
                        return self._finish(tally, stop, max_failures)
                    inflight = (batch, from_split, self._submit(sender, batch, tally))
                batch, from_split, future = inflight
                inflight = None
                upcoming = self._next_batch(skip, also_skip=batch) if not splits and not stopping() else []
                try:
                    result = future.result()
                except CloudRetryable as exc:
                    tally.failures += 1
                    consecutive += 1
                    self.outbox.note_error(self.product, batch, str(exc))
                    if from_split:
                        splits.appendleft(batch)  # a half being bisected goes again as it is
                    if max_failures is not None and consecutive >= max_failures:
                        why = f"gave up after {consecutive} failed requests in a row; last: {exc}"
                        return self._stop(tally, why, len(batch))
                    self._wait_after(exc, consecutive, len(batch), stop)
                    continue
                except (CloudAuthError, CloudNotFound, CloudRedirected) as exc:
                    tally.failures += 1
                    self.outbox.note_error(self.product, batch, str(exc))
                    return self._stop(tally, str(exc), len(batch), fatal=exc)
                except CloudRejected as exc:
                    consecutive = 0
                    if self._bisect(batch, exc, splits, skip, tally):
                        refused_alone += 1
                        if refused_alone >= refusal_limit:
                            why = (
                                f"the cloud refused {refused_alone} devices in a row, each on its own: it refuses "
                                f"every request, not some IDs; last: {exc}"
                            )
                            return self._stop(tally, why, len(batch))
                    continue
                consecutive = 0
                refused_alone = 0
                if upcoming and not stopping():
                    inflight = (upcoming, False, self._submit(sender, upcoming, tally))
                self._record(batch, result.outcomes(batch), tally, skip)

    def _submit(self, sender: ThreadPoolExecutor, batch: list[str], tally: _Tally) -> Future[ImportResult]:
        tally.requests += 1
        tally.devices_sent += len(batch)
        return sender.submit(self.client.import_devices, self.product, batch, import_sims=self.import_sims)

    def _wait_after(self, exc: CloudRetryable, consecutive: int, devices: int, stop: threading.Event | None) -> None:
        wait = self.backoff.delay(consecutive - 1, retry_after=getattr(exc, "retry_after", None), random=self._random)
        log.warning("sync: %s; retrying in %.1f s", exc, wait)
        self._emit(SyncEvent(SyncEventKind.RETRY, self.product, devices, message=str(exc), wait=wait))
        if stop is not None:
            stop.wait(wait)
        else:
            self._sleep(wait)

    def _bisect(
        self, batch: list[str], exc: CloudRejected, splits: deque[list[str]], skip: set[str], tally: _Tally
    ) -> bool:
        """A refused batch goes again in halves; an ID refused on its own is skipped for this run
        (returns True then)."""
        self.outbox.note_error(self.product, batch, f"batch refused: {exc}")
        self._emit(SyncEvent(SyncEventKind.REJECTED, self.product, len(batch), message=str(exc)))
        if len(batch) > 1:
            half = len(batch) // 2
            splits.appendleft(batch[half:])
            splits.appendleft(batch[:half])
            return False
        skip.update(batch)
        self._refused_alone.update(batch)
        tally.rejected += batch
        log.warning("sync: %s refused on its own: %s", batch[0], exc)
        return True

    def _next_batch(self, skip: set[str], also_skip: Sequence[str] = ()) -> list[str]:
        excluded = skip.union(also_skip) if also_skip else skip
        entries = self.outbox.pending(self.product, limit=self.batch_size + len(excluded))
        chosen = [e for e in entries if e.device_id not in excluded][: self.batch_size]
        for e in chosen:
            self._group_of[e.device_id] = e.group
        return [e.device_id for e in chosen]

    def _record(
        self, batch: Sequence[str], outcomes: Mapping[str, ImportOutcome], tally: _Tally, skip: set[str]
    ) -> None:
        resolved = {d: _STATE_FOR[o] for d, o in outcomes.items() if o is not ImportOutcome.UNMENTIONED}
        unmentioned = [d for d, o in outcomes.items() if o is ImportOutcome.UNMENTIONED]
        for device_id, outcome in outcomes.items():
            placement = self._placement(device_id, outcome)
            if placement is not None:
                # In the product, not yet in its group: it stays pending until placed.
                del resolved[device_id]
                tally.to_place.append(placement)
                skip.add(device_id)
        self.outbox.resolve(self.product, resolved)
        if unmentioned:
            self.outbox.note_error(self.product, unmentioned, UNMENTIONED_ERROR)
            skip.update(unmentioned)
            tally.unmentioned += unmentioned
        counts = Counter(outcomes.values())
        tally.outcomes.update(counts)
        log.info(
            "sync: batch of %d for product %s: %s",
            len(batch),
            self.product,
            ", ".join(f"{n} {o.value}" for o, n in sorted(counts.items())),
        )
        self._emit(
            SyncEvent(SyncEventKind.BATCH, self.product, len(batch), outcomes={o.value: n for o, n in counts.items()})
        )

    def _placement(self, device_id: str, outcome: ImportOutcome) -> Placement | None:
        if not outcome.synced:
            return None
        group = self._group_of.get(device_id)
        name = self.device_names.name_for(device_id) if self.device_names is not None else None
        if group is None and name is None:
            return None
        return Placement(device_id, group, name, new=outcome is ImportOutcome.UPDATED)

    def _finish(self, tally: _Tally, stop: threading.Event | None, max_failures: int | None) -> DrainReport:
        """The queue is empty: put the devices just imported into their groups, then report."""
        if not tally.to_place:
            return self._report(tally)
        placements, tally.to_place = tally.to_place, []
        try:
            result = place_devices(
                self.client,
                self.product,
                placements,
                on_retry=lambda exc, n, devices: self._wait_after(exc, n, devices, stop),
                stopping=lambda: stop is not None and stop.is_set(),
                max_failures=max_failures,
                on_placed=lambda done: self.outbox.resolve(
                    self.product, {p.device_id: (OutboxState.SYNCED, None) for p in done}
                ),
                on_error=lambda ids, why: self.outbox.note_error(self.product, ids, why),
            )
        except PlacementStopped as exc:
            tally.placed += exc.placed
            tally.place_requests += exc.requests
            tally.failures += exc.failures
            if exc.fatal is not None:
                return self._stop(tally, str(exc.fatal), exc.devices, fatal=exc.fatal)
            return self._stop(tally, exc.why, exc.devices)
        tally.placed += result.placed
        tally.place_requests += result.requests
        tally.failures += result.failures
        tally.rejected += result.refused
        if result.placed:
            log.info("sync: %d device(s) of product %s put into their group / named", result.placed, self.product)
        return self._report(tally)

    def _stop(self, tally: _Tally, why: str, devices: int, *, fatal: CloudError | None = None) -> DrainReport:
        # The report and the STOPPED event carry this to whoever reports it (the command's output,
        # the line's sinks, SyncThread's log): logging it louder here would show it twice.
        log.info("sync stopped: %s", why)
        self._emit(SyncEvent(SyncEventKind.STOPPED, self.product, devices, message=why))
        return self._report(tally, stopped=why, fatal=fatal)

    def _report(self, tally: _Tally, *, stopped: str | None = None, fatal: CloudError | None = None) -> DrainReport:
        return DrainReport(
            product=self.product,
            requests=tally.requests,
            devices_sent=tally.devices_sent,
            outcomes=dict(tally.outcomes),
            failures=tally.failures,
            rejected=tuple(tally.rejected),
            unmentioned=tuple(tally.unmentioned),
            stopped=stopped,
            fatal=fatal,
            placed=tally.placed,
            place_requests=tally.place_requests,
        )

    def _emit(self, event: SyncEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken sink must not stop the sync
                log.exception("sync: event sink failed")


class SyncThread:
    """The worker inside ``station run``: drains, then waits for ``wake()`` or ``idle_poll`` seconds.

    It retries transient failures forever (a day offline is normal) and stops by itself only on a
    fatal error, kept in ``error``. ``stop()`` ends it promptly, also in the middle of a backoff.
    """

    def __init__(
        self, worker: SyncWorker, *, idle_poll: float = 30.0, name: str = "cloud-sync", close_client: bool = False
    ) -> None:
        self.worker = worker
        self.idle_poll = idle_poll
        self._close_client = close_client
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: CloudError | None = None
        self.last_report: DrainReport | None = None

    def start(self) -> SyncThread:
        self._thread.start()
        return self

    def wake(self) -> None:
        """New devices were queued: drain now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to stop and wait for it; False when it is still in a request after ``timeout``."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if stopped and self._close_client:
            self.worker.client.close()
        return stopped

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                report = self.worker.drain(stop=self._stop, max_failures=None)
            except Exception as exc:  # a registry error must not die silently in a thread
                log.exception("sync thread failed")
                self.error = exc if isinstance(exc, CloudError) else CloudError(f"sync thread failed: {exc}")
                return
            self.last_report = report
            if report.fatal is not None:
                log.error("sync stopped: %s", report.fatal)
                self.error = report.fatal
                return
            self._wake.wait(self.idle_poll)


def start_background_sync(
    outbox: Outbox,
    config: CloudConfig,
    token: AccessToken,
    *,
    on_event: Callable[[SyncEvent], None] | None = None,
    idle_poll: float = 30.0,
) -> SyncThread:
    """What ``station run`` starts when the profile has a [cloud] section and a token is available.

    The thread owns its client and closes it on ``stop()``; call ``wake()`` after each PASS.
    """
    # Scanned serial numbers name the devices first; the mapping file names the others.
    from_file = load_device_names(config.device_names) if config.device_names is not None else None
    names = SerialNames(outbox.registry, from_file)
    client = ParticleCloud.from_config(config, token)
    worker = SyncWorker(
        outbox,
        client,
        product=config.product,
        batch_size=config.batch_size,
        import_sims=config.import_sims,
        on_event=on_event,
        device_names=names,
    )
    return SyncThread(worker, idle_poll=idle_poll, close_client=True).start()
