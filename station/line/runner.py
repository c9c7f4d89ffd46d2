"""The line runner: watches the sources for boards, runs a job per busy slot, enforces timeouts.

One thread per busy slot; the runner's own loop only scans, starts and times out jobs, so a hung
or failing device never stalls the others. Stopping lets running jobs finish first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from station.devices.base import Mode
from station.discovery.base import Candidate, Source, scan_all
from station.discovery.probe import peek_device
from station.errors import Reason, StationError
from station.line.events import Attached, Detached, EventSink, LineStatus, Rebooted
from station.line.job import AttemptRecorder, JobContext, JobResult, finish_job, run_job
from station.line.plan import JobPlan
from station.line.scan import ScanDesk

# How often the sources are scanned. A scan only reads what the OS already holds (USB descriptors,
# the serial-port list: well under a millisecond each), and a board waits on average half this
# long before its job starts, so a short interval is cheap and saves time on every board.
DEFAULT_POLL_INTERVAL = 0.05

# A board that passed restarts into its new firmware: it drops off USB and comes back on the same
# port in normal mode, sometimes after the discovery's own grace has run out. Coming back that way
# within this window, it is first identified without switching modes; if it is the board that just
# passed, nothing is written again.
REBOOT_WINDOW = 30.0


class SlotState(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


@dataclass
class _Slot:
    candidate: Candidate
    label: str
    ctx: JobContext
    started: float
    state: SlotState = SlotState.RUNNING
    detached: bool = False
    thread: threading.Thread | None = None
    device_id: str | None = None  # once the job identified the board


@dataclass(frozen=True)
class _RecentPass:
    device_id: str
    left_at: float  # monotonic time the slot was seen empty


class LineRunner:
    def __init__(
        self,
        sources: Sequence[Source],
        plan: JobPlan,
        recorder: AttemptRecorder,
        sink: EventSink,
        *,
        label: Callable[[str], str] = lambda slot: slot,
        sync_backlog: Callable[[], int | None] = lambda: None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        status_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        scan_desk: ScanDesk | None = None,
    ) -> None:
        self.scan_desk = scan_desk  # set when the profile requires a scan per board
        self.sources = list(sources)
        self.plan = plan
        self.recorder = recorder
        self.sink = sink
        self.label = label
        self.sync_backlog = sync_backlog
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._recent_passes: dict[str, _RecentPass] = {}
        self._last_status = float("-inf")
        self.passed = 0
        self.failed = 0

    # -- one scan --------------------------------------------------------------------------
    def poll(self) -> None:
        """Scan once: announce arrivals and departures, start jobs, time out hung ones."""
        seen = scan_all(self.sources)
        with self._lock:
            now = self.monotonic()
            for slot, entry in list(self._slots.items()):
                if slot not in seen and not entry.detached:
                    entry.detached = True
                    entry.ctx.event(Detached)
                    if entry.state is SlotState.PASSED and entry.device_id is not None:
                        self._recent_passes[slot] = _RecentPass(entry.device_id, now)
                if entry.detached and entry.state is not SlotState.RUNNING:
                    del self._slots[slot]
            for slot, candidate in seen.items():
                if slot not in self._slots:
                    recent = self._recent_passes.pop(slot, None)
                    passed_before = None
                    if (
                        recent is not None
                        and now - recent.left_at <= REBOOT_WINDOW
                        and candidate.description.mode is Mode.NORMAL
                    ):
                        passed_before = recent.device_id
                    self._start(candidate, announce=True, passed_before=passed_before)
            self._time_out_hung_jobs()
        self._maybe_status()

    def retry(self, slot: str) -> bool:
        """Run a failed slot's board again (the technician's retry key). False if not possible."""
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or entry.detached or entry.state is not SlotState.FAILED:
                return False
            self._start(entry.candidate, announce=False)
            return True

    def submit_scan(self, code: str, slot: str | None = None) -> tuple[str, str]:
        """A scanned code for ``slot`` (port path or label), else the board that began waiting last.

        Returns (slot, serial); ScanRejected when no board takes it or scans are off.
        """
        from station.line.scan import ScanRejected

        if self.scan_desk is None:
            raise ScanRejected("this line does not take scans", hint='set scan = "required" in the profile')
        return self.scan_desk.offer(code, slot)

    def running(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.state is SlotState.RUNNING)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, then let running jobs finish (each bounded by its timeout)."""
        while not stop.is_set():
            self.poll()
            stop.wait(self.poll_interval)
        if self.scan_desk is not None:
            self.scan_desk.close()  # boards still waiting for a scan give up, unwritten
        self.drain()

    def drain(self) -> None:
        """Wait for every running job to end, enforcing timeouts while waiting."""
        while self.running():
            with self._lock:
                self._time_out_hung_jobs()
            time.sleep(min(self.poll_interval, 0.05))
        self._maybe_status(force=True)

    # -- internals -------------------------------------------------------------------------
    def _start(self, candidate: Candidate, *, announce: bool, passed_before: str | None = None) -> None:
        slot = candidate.slot
        label = self.label(slot)
        ctx = JobContext(slot=slot, label=label, emit=self.sink, clock=self.clock, monotonic=self.monotonic)
        ctx.scan_desk = self.scan_desk
        entry = _Slot(candidate, label, ctx, self.monotonic())
        self._slots[slot] = entry
        if announce:
            d = candidate.description
            ctx.event(Attached, family=d.family.value, mode=d.mode.value)
        thread = threading.Thread(target=self._work, args=(entry, passed_before), name=f"slot-{slot}", daemon=True)
        entry.thread = thread
        thread.start()

    def _work(self, entry: _Slot, passed_before: str | None) -> None:
        if passed_before is not None and self._is_rebooted(entry, passed_before):
            return
        result = run_job(entry.candidate.open, entry.candidate.description, self.plan, self.recorder, entry.ctx)
        if result is not None:
            self._settle(entry, result)

    def _is_rebooted(self, entry: _Slot, device_id: str) -> bool:
        """Whether the board back on this slot is the one that just passed, now running its firmware.

        It is identified without switching modes; any doubt (no answer, another ID) means a new
        board, which gets its job as usual.
        """
        try:
            device = peek_device(entry.candidate)
            try:
                identity = device.identify()
            finally:
                device.close()
        except StationError:
            return False
        if identity.device_id.lower() != device_id:
            return False
        with self._lock:
            entry.state = SlotState.PASSED
            entry.device_id = device_id
        entry.ctx.event(Rebooted, device_id=device_id, firmware=identity.firmware)
        return True

    def _settle(self, entry: _Slot, result: JobResult) -> None:
        with self._lock:
            entry.device_id = result.device_id
            entry.state = SlotState.PASSED if result.passed else SlotState.FAILED
            if result.passed:
                self.passed += 1
            else:
                self.failed += 1

    def _time_out_hung_jobs(self) -> None:
        now = self.monotonic()
        for entry in self._slots.values():
            if entry.ctx.waiting_scan:
                continue  # a person is on it
            busy = now - entry.started - entry.ctx.scan_waited
            if entry.state is not SlotState.RUNNING or busy <= self.plan.job_timeout:
                continue
            attempt_id = entry.ctx.attempt_id
            if attempt_id is None:  # not even recorded yet: nothing to finish
                continue
            entry.ctx.abandoned.set()
            device = entry.ctx.device
            if device is not None:
                # Closing the port or USB handle is what unblocks a worker stuck in a read.
                with contextlib.suppress(Exception):
                    device.close()
            outcome = JobResult(
                False,
                None,
                Reason.TIMEOUT,
                f"no result after {self.plan.job_timeout:.0f} s; the board was abandoned (re-plug it to retry)",
                now - entry.started,
                attempt_id,
            )
            # The lock is held: record without re-entering _settle's lock.
            if finish_job(outcome, self.plan, self.recorder, entry.ctx, reported_firmware=None) is not None:
                entry.state = SlotState.FAILED
                self.failed += 1

    def _maybe_status(self, *, force: bool = False) -> None:
        now = self.monotonic()
        if not force and now - self._last_status < self.status_interval:
            return
        self._last_status = now
        self.sink(
            LineStatus(
                time=self.clock(),
                slot="",
                label="",
                passed=self.passed,
                failed=self.failed,
                running=self.running(),
                sync_backlog=self.sync_backlog(),
            )
        )
