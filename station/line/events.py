"""Line events: what the runner tells dashboards, logs and MES integrations, one typed value each.

Every event serialises to one JSON object with ``event`` (its kind), ``time`` (unix seconds) and
``slot`` (the port path); the README documents the schema and tests check the stream against it.
Events never carry secrets: no token, no key material.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    time: float
    slot: str
    label: str

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"event": self.kind}
        body.update(asdict(self))
        return body


@dataclass(frozen=True, kw_only=True)
class Attached(Event):
    kind: ClassVar[str] = "attached"
    family: str
    mode: str


@dataclass(frozen=True, kw_only=True)
class Identified(Event):
    kind: ClassVar[str] = "identified"
    device_id: str
    platform: str


@dataclass(frozen=True, kw_only=True)
class ProgressEvent(Event):
    kind: ClassVar[str] = "progress"
    device_id: str | None
    phase: str
    done: int
    total: int
    image: str | None = None


@dataclass(frozen=True, kw_only=True)
class Passed(Event):
    kind: ClassVar[str] = "passed"
    device_id: str
    seconds: float
    firmware: str | None = None


@dataclass(frozen=True, kw_only=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    device_id: str | None
    reason: str  # a station.errors.Reason value
    message: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class Recorded(Event):
    kind: ClassVar[str] = "recorded"
    device_id: str | None
    attempt_id: int
    result: str  # "pass" or "fail"


@dataclass(frozen=True, kw_only=True)
class Rebooted(Event):
    """The board that just passed on this slot came back running its new firmware: nothing written."""

    kind: ClassVar[str] = "rebooted"
    device_id: str
    firmware: str | None = None


@dataclass(frozen=True, kw_only=True)
class Detached(Event):
    kind: ClassVar[str] = "detached"


@dataclass(frozen=True, kw_only=True)
class LineStatus(Event):
    """Periodic totals for the header of a dashboard; ``slot`` is empty."""

    kind: ClassVar[str] = "status"
    passed: int
    failed: int
    running: int
    sync_backlog: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SyncProgress(Event):
    """The cloud sync worker's news: a batch answered, a retry, a refusal, a stop. ``slot`` is empty."""

    kind: ClassVar[str] = "sync"
    what: str  # sync-batch, sync-retry, sync-rejected, sync-stopped, sync-grouped
    product: str
    devices: int
    outcomes: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ScanWanted(Event):
    """The board on this slot waits for its label's serial number before anything is written."""

    kind: ClassVar[str] = "scan-wanted"
    device_id: str
    message: str = "scan the unit's label"


@dataclass(frozen=True, kw_only=True)
class Scanned(Event):
    """The serial number scanned for this slot's board, linked to its device ID (committed)."""

    kind: ClassVar[str] = "scanned"
    device_id: str
    serial: str


@dataclass(frozen=True, kw_only=True)
class ScanRefused(Event):
    """A scanned line that went to no board (no slot waiting, unknown slot, not a serial number)."""

    kind: ClassVar[str] = "scan-refused"
    message: str


@dataclass(frozen=True, kw_only=True)
class LabelPrinted(Event):
    """A unit label reached the printer (``ok``) or did not and is queued to reprint."""

    kind: ClassVar[str] = "label"
    device_id: str
    ok: bool
    label_id: int
    message: str = ""


EventSink = Callable[[Event], None]

EVENT_KINDS: tuple[type[Event], ...] = (
    Attached,
    Identified,
    ProgressEvent,
    Passed,
    Failed,
    Recorded,
    Rebooted,
    Detached,
    LineStatus,
    SyncProgress,
    ScanWanted,
    Scanned,
    ScanRefused,
    LabelPrinted,
)
