"""One shift of the line: the runner, the registry, the sources and, when configured, the cloud sync.

`station run` and `station demo` both run a session; only the screen differs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from station.discovery.base import Source
from station.line.events import Event, EventSink, LabelPrinted, Recorded, SyncProgress
from station.line.runner import DEFAULT_POLL_INTERVAL, LineRunner
from station.line.scan import ScanDesk
from station.line_setup import PreparedLine
from station.profile import ScanPolicy
from station.store import OutboxState, Registry
from station.store.audit import AuditAction
from station.store.trace import Actor

if TYPE_CHECKING:
    from station.cloud.sync import SyncEvent, SyncThread
    from station.cloud.token import AccessToken
    from station.labels.service import LabelService


class LineSession:
    def __init__(
        self,
        line: PreparedLine,
        registry: Registry,
        sources: Sequence[Source],
        sink: EventSink,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        clock: Callable[[], float] = time.time,
        actor: Actor | None = None,
    ) -> None:
        self.line = line
        self.registry = registry
        self.sink = sink
        self.clock = clock
        self.sync: SyncThread | None = None
        # Who runs the line: recorded with each scan and retry in the audit log.
        self.actor = actor or Actor(line.plan.operator or "unknown", "unmanaged", line.plan.station_id)
        scanning = line.profile.scan is ScanPolicy.REQUIRED
        self.labels: LabelService | None = None
        self._label_queue: queue.SimpleQueue[Recorded | None] = queue.SimpleQueue()
        self._label_thread: threading.Thread | None = None
        if line.labels is not None:
            from station.labels.service import LabelService

            self.labels = LabelService(registry, line.labels)
        self.runner = LineRunner(
            sources,
            line.plan,
            registry,
            self._on_event,
            label=line.profile.label,
            sync_backlog=self._backlog,
            poll_interval=poll_interval,
            scan_desk=ScanDesk(self._link_serial) if scanning else None,
        )

    def _link_serial(self, attempt_id: int, serial: str, device_id: str) -> None:
        self.registry.trace.link_serial(serial, device_id, attempt_id=attempt_id, actor=self.actor)

    def retry(self, slot: str) -> bool:
        """The technician's retry, audited when it happens."""
        if not self.runner.retry(slot):
            return False
        a = self.actor
        self.registry.audit.append(AuditAction.RETRY, station_id=a.station_id, actor=a.name, role=a.role, subject=slot)
        return True

    def start_sync(self, token: AccessToken) -> None:
        """Drain the outbox into the product from a background thread while the line runs."""
        from station.cloud.sync import start_background_sync

        if self.line.cloud is None:
            raise ValueError("the profile has no [cloud] section")
        self.sync = start_background_sync(self.registry.outbox, self.line.cloud, token, on_event=self._on_sync)

    def _on_event(self, event: Event) -> None:
        self.sink(event)
        if self.sync is not None and isinstance(event, Recorded) and event.result == "pass":
            self.sync.wake()
        if self.labels is not None and isinstance(event, Recorded) and event.result == "pass":
            self._label_queue.put(event)

    def _print_labels(self) -> None:
        """One label per passed board, off the workers' threads: a slow or absent printer delays no board."""
        assert self.labels is not None
        m = self.line.bundle.manifest
        while True:
            recorded = self._label_queue.get()
            if recorded is None or recorded.device_id is None:
                if recorded is None:
                    return
                continue
            label = self.labels.unit_label(
                recorded.device_id,
                product=m.product.describe(),
                firmware=str(m.product_version),
                station=self.line.plan.station_id,
            )
            outcome = self.labels.print_new(label, attempt_id=recorded.attempt_id)
            self.sink(
                LabelPrinted(
                    time=self.clock(),
                    slot=recorded.slot,
                    label=recorded.label,
                    device_id=outcome.device_id,
                    ok=outcome.ok,
                    label_id=outcome.label_id,
                    message=outcome.message,
                )
            )

    def _on_sync(self, event: SyncEvent) -> None:
        if event.kind.value == "sync-batch" and event.devices:
            # What the run's background sync put into the console, in the audit log, as `station sync` does.
            a = self.actor
            self.registry.audit.append(
                AuditAction.SYNC,
                station_id=a.station_id,
                actor=a.name,
                role=a.role,
                subject=f"product {event.product}",
                after={"devices": event.devices, "outcomes": dict(event.outcomes)},
            )
        self.sink(
            SyncProgress(
                time=self.clock(),
                slot="",
                label="",
                what=event.kind.value,
                product=event.product,
                devices=event.devices,
                outcomes=dict(event.outcomes),
                message=event.message,
            )
        )

    def _backlog(self) -> int | None:
        if self.line.plan.sync_product is None:
            return None
        return self.registry.outbox.counts(self.line.plan.sync_product)[OutboxState.PENDING]

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; running jobs finish first, then labels print and the sync thread stops."""
        if self.labels is not None:
            self._label_thread = threading.Thread(target=self._print_labels, name="labels", daemon=True)
            self._label_thread.start()
        try:
            self.runner.run(stop)
        finally:
            if self._label_thread is not None:
                self._label_queue.put(None)
                self._label_thread.join(timeout=60.0)
            if self.sync is not None:
                self.sync.stop(timeout=10.0)
