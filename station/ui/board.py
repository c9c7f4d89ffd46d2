"""The bench as a screen sees it: one view per slot and the line's totals, rebuilt from events alone.

Every screen (the dashboard, a test, a plain log) folds the same event stream through ``Board``,
so what the technician sees can never disagree with what MES receives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from enum import StrEnum

from station.line.events import (
    Attached,
    Detached,
    Event,
    Failed,
    Identified,
    LineStatus,
    Passed,
    ProgressEvent,
    Rebooted,
    Recorded,
    Scanned,
    ScanWanted,
)


class TileState(StrEnum):
    EMPTY = "empty"
    WORKING = "working"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class SlotView:
    slot: str
    label: str
    state: TileState = TileState.WORKING
    attached: bool = True
    family: str | None = None
    device_id: str | None = None
    platform: str | None = None
    phase: str | None = None
    done: int = 0
    total: int = 0
    reason: str | None = None
    message: str | None = None
    seconds: float | None = None
    awaiting_scan: bool = False  # the board waits for its label's serial number
    serial: str | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class Totals:
    passed: int = 0
    failed: int = 0
    running: int = 0
    sync_backlog: int | None = None
    first_time: float | None = None
    last_time: float | None = None

    @property
    def yield_percent(self) -> float | None:
        done = self.passed + self.failed
        return 100.0 * self.passed / done if done else None

    @property
    def per_hour(self) -> float | None:
        if self.first_time is None or self.last_time is None or self.last_time - self.first_time < 1:
            return None
        return self.passed * 3600.0 / (self.last_time - self.first_time)


class Board:
    """Thread-safe fold of events into slot views and totals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, SlotView] = {}
        self.totals = Totals()

    def apply(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def slots(self) -> list[SlotView]:
        with self._lock:
            return sorted(self._slots.values(), key=lambda v: v.label)

    def slot(self, slot: str) -> SlotView | None:
        with self._lock:
            return self._slots.get(slot)

    def _apply(self, e: Event) -> None:
        t = self.totals
        self.totals = replace(t, first_time=t.first_time if t.first_time is not None else e.time, last_time=e.time)
        if isinstance(e, LineStatus):
            self.totals = replace(self.totals, running=e.running, sync_backlog=e.sync_backlog)
            return
        view = self._slots.get(e.slot) or SlotView(e.slot, e.label)
        if isinstance(e, Attached):
            view = SlotView(e.slot, e.label, family=e.family)
        elif isinstance(e, Identified):
            view = replace(view, device_id=e.device_id, platform=e.platform, state=TileState.WORKING)
        elif isinstance(e, ProgressEvent):
            view = replace(view, phase=e.phase, done=e.done, total=e.total, state=TileState.WORKING)
        elif isinstance(e, Passed):
            view = replace(view, state=TileState.PASS, seconds=e.seconds, reason=None, message=None)
            self.totals = replace(self.totals, passed=self.totals.passed + 1)
        elif isinstance(e, Failed):
            view = replace(view, awaiting_scan=False)
            view = replace(view, state=TileState.FAIL, reason=e.reason, message=e.message, seconds=e.seconds)
            self.totals = replace(self.totals, failed=self.totals.failed + 1)
        elif isinstance(e, Rebooted):
            view = replace(view, state=TileState.PASS, device_id=e.device_id, phase="restarted into its new firmware")
        elif isinstance(e, ScanWanted):
            view = replace(view, awaiting_scan=True, phase=e.message, state=TileState.WORKING)
        elif isinstance(e, Scanned):
            view = replace(view, awaiting_scan=False, serial=e.serial, phase=f"serial {e.serial}")
        elif isinstance(e, Recorded):
            pass
        elif isinstance(e, Detached):
            view = replace(view, attached=False)
            if view.state is TileState.WORKING:
                view = replace(view, state=TileState.EMPTY)
        self._slots[e.slot] = view
