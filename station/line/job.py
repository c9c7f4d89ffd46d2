"""One device's job on the line: identify, check the target, flash, verify, restart, confirm, record.

The job is a plain function run by a worker thread. Every step that talks to the device can fail
with a StationError carrying a reason code; the job turns it into a FAIL with that reason, records
it, and never lets one device's failure reach another slot.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from station.devices.base import Device, DeviceDescription, DeviceIdentity, FlashImage, Phase, Progress, VerifyNote
from station.errors import Reason, StationError, VerifyMismatch, WrongTarget
from station.line.events import (
    Event,
    EventSink,
    Failed,
    Identified,
    Passed,
    ProgressEvent,
    Recorded,
    Scanned,
    ScanWanted,
)
from station.line.plan import JobPlan
from station.line.scan import ScanDesk
from station.profile import LineMode, VerifyPolicy
from station.store.models import AttemptResult, RunContext, Slot
from station.store.unit_serials import SerialSource

# At most this many progress events per second per slot reach the sinks (MES and screens need no more).
PROGRESS_EVENTS_PER_SECOND = 4

T = TypeVar("T")


class AttemptRecorder(Protocol):
    """What the job needs from the registry (station.store.Registry); each call is one committed transition."""

    def start_attempt(self, slot: Slot, context: RunContext) -> int: ...

    def record_phase(self, attempt_id: int, phase: str) -> None: ...

    def identify(self, attempt_id: int, device_id: str, platform: str) -> str: ...

    def finish_attempt(
        self,
        attempt_id: int,
        result: AttemptResult | str,
        error_code: str | None = None,
        error_message: str | None = None,
        *,
        enqueue_product: str | None = None,
        group: str | None = None,
    ) -> None: ...

    # [unit_data] lines only: a serial number reserved (committed) before the write, and what was written.
    def reserve_unit_serial(self, attempt_id: int, source: SerialSource) -> str: ...

    def record_unit_data(self, attempt_id: int, unit_data: str) -> None: ...


@dataclass(frozen=True)
class JobResult:
    passed: bool
    device_id: str | None
    reason: Reason | None
    message: str
    seconds: float
    attempt_id: int
    # For callers that show more than the registry keeps (`station flash`): who the device said it
    # was, the error itself (its hint and exit code), and what it reported after restart.
    identity: DeviceIdentity | None = None
    error: StationError | None = field(default=None, compare=False)
    firmware: str | None = None


class _Throttle:
    """Lets a progress event through when the phase or image changes, at the end, or every 1/N s."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last_key: tuple[str, str | None] | None = None
        self._last_time = 0.0

    def admit(self, p: Progress) -> bool:
        key = (p.phase.value, p.image)
        now = self._clock()
        if key != self._last_key or p.done >= p.total or now - self._last_time >= 1 / PROGRESS_EVENTS_PER_SECOND:
            self._last_key, self._last_time = key, now
            return True
        return False


class JobContext:
    """The job's link to the line: where events go, how time is read, whether it was abandoned."""

    def __init__(
        self,
        *,
        slot: str,
        label: str,
        emit: EventSink,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slot = slot
        self.label = label
        self.emit = emit
        self.clock = clock
        self.monotonic = monotonic
        self.abandoned = threading.Event()  # set by the runner when the job ran out of time
        self.finish_lock = threading.Lock()  # the runner and the job race to record the result once
        self.finished = False
        self.device: Device | None = None  # set once open, so the runner can close a hung device
        self.attempt_id: int | None = None
        # Serial-number scan (profile scan = "required"): where the scan comes from; the desk
        # commits its link to the device before the job goes on to write anything.
        self.scan_desk: ScanDesk | None = None
        self.waiting_scan = False  # the runner does not time out a board waiting for a person
        self.scan_waited = 0.0  # seconds spent waiting, not counted against the job's timeout
        # Images decided only once the board is known (station flash of one ESP image: the layout
        # rules need the board's chip and, without --partition-table, its partition table).
        self.place_images: Callable[[Device, DeviceIdentity], tuple[FlashImage, ...]] | None = None
        self.verify_note: VerifyNote | None = None  # how verify checked the images, when not by itself

    def event(self, cls: type[Event], **fields: object) -> None:
        self.emit(cls(time=self.clock(), slot=self.slot, label=self.label, **fields))


def run_job(
    open_device: Callable[[], Device],
    description: DeviceDescription,
    plan: JobPlan,
    recorder: AttemptRecorder,
    ctx: JobContext,
) -> JobResult | None:
    """Take one device through the line. Returns None when the runner abandoned it (timeout)."""
    started = ctx.monotonic()
    attempt_id = recorder.start_attempt(Slot(ctx.slot, ctx.label), plan.run_context())
    ctx.attempt_id = attempt_id
    identity: DeviceIdentity | None = None
    throttle = _Throttle(ctx.monotonic)

    def timed(phase: Phase, action: Callable[[], T]) -> T:
        # The registry times each phase from one transition to the next.
        recorder.record_phase(attempt_id, phase.value)
        return action()

    def on_progress(p: Progress) -> None:
        if not ctx.abandoned.is_set() and throttle.admit(p):
            ctx.event(
                ProgressEvent,
                device_id=identity.device_id if identity else None,
                phase=p.phase.value,
                done=p.done,
                total=p.total,
                image=p.image,
            )

    device: Device | None = None
    reported: str | None = None
    try:
        device = timed(Phase.CONNECT, open_device)
        ctx.device = device
        identity = timed(Phase.IDENTIFY, device.identify)
        # The registry's spelling of the ID (trimmed, lower case) is the one every event carries.
        identity = replace(identity, device_id=recorder.identify(attempt_id, identity.device_id, identity.platform))
        ctx.event(Identified, device_id=identity.device_id, platform=identity.platform)
        why = plan.target.mismatch(description.family, identity)
        if why is not None:
            raise WrongTarget(why, device=identity.device_id, hint="nothing was written; use a board of the right kind")
        if ctx.scan_desk is not None:
            _scan(ctx, recorder, attempt_id, identity.device_id)
        if plan.mode is LineMode.FLASH:
            dev = device
            firmware = plan.images if ctx.place_images is None else ctx.place_images(dev, identity)
            images = firmware
            unit = plan.unit_data
            if unit is not None:
                # Committed before a byte is written: a crash after this never hands the number out again.
                serial = recorder.reserve_unit_serial(attempt_id, unit.source)
                rows = unit.rows(serial=serial, station=plan.station_id, now=ctx.clock())
                nvs = unit.image(rows)
                images = (*images, nvs)
            timed(Phase.WRITE, lambda: dev.flash(images, on_progress))
            if plan.verify is not VerifyPolicy.NEVER:
                note = timed(Phase.VERIFY, lambda: dev.verify(images, on_progress))
                ctx.verify_note = note
                if note is not None:
                    if not note.verified and plan.verify is VerifyPolicy.REQUIRED:
                        raise VerifyMismatch(
                            f"{note.text}, and the profile requires verification",
                            device=identity.device_id,
                            hint='flash it on a line whose profile says verify = "always", or not in this mode',
                        )
                    # How the images were checked, kept with the attempt (history lists it as a phase).
                    recorder.record_phase(attempt_id, f"{Phase.VERIFY.value}: {note.text}")
            if unit is not None:
                _read_back(dev, nvs, identity.device_id)
                recorder.record_unit_data(attempt_id, unit.record(rows, nvs))
            timed(Phase.RESTART, dev.restart)
            reported = dev.running_firmware()
            if plan.confirm_version and dev.confirm(firmware) is False:
                raise StationError(
                    f"after restart the device does not report the new firmware (it reports {reported!r})",
                    device=identity.device_id,
                    reason=Reason.VERIFY_MISMATCH,
                    hint="the image was written and verified but did not start; check its dependencies",
                )
        outcome = JobResult(
            True, identity.device_id, None, "ok", ctx.monotonic() - started, attempt_id, identity, None, reported
        )
    except StationError as exc:
        outcome = JobResult(
            False,
            identity.device_id if identity else None,
            exc.reason,
            exc.one_line(),
            ctx.monotonic() - started,
            attempt_id,
            identity,
            exc,
            reported,
        )
    except Exception as exc:  # a bug in a family must fail this slot only, and say what happened
        error = StationError(f"internal error: {type(exc).__name__}: {exc}", reason=Reason.INTERNAL)
        outcome = JobResult(
            False,
            identity.device_id if identity else None,
            Reason.INTERNAL,
            error.message,
            ctx.monotonic() - started,
            attempt_id,
            identity,
            error,
            reported,
        )
    finally:
        if device is not None:
            # Closing a vanished device may fail; the outcome already says why.
            with contextlib.suppress(Exception):
                device.close()
    return finish_job(outcome, plan, recorder, ctx, reported_firmware=reported)


def _scan(ctx: JobContext, recorder: AttemptRecorder, attempt_id: int, device_id: str) -> None:
    """Wait for the board's serial number and commit its link to the device before any write, so a
    crash from here on never loses which sticker went on which board."""
    assert ctx.scan_desk is not None
    recorder.record_phase(attempt_id, "scan")
    ctx.waiting_scan = True
    ctx.event(ScanWanted, device_id=device_id)
    began = ctx.monotonic()
    try:
        serial = ctx.scan_desk.wait(ctx.slot, ctx.label, attempt_id, device_id, ctx.abandoned)
    finally:
        ctx.scan_waited += ctx.monotonic() - began
        ctx.waiting_scan = False
    if serial is None:
        raise StationError(
            "the line stopped before this board's label was scanned",
            device=device_id,
            reason=Reason.INTERRUPTED,
            hint="nothing was written; plug it in again and scan its label",
        )
    ctx.event(Scanned, device_id=device_id, serial=serial)


def _read_back(device: Device, image: FlashImage, device_id: str) -> None:
    """Read the unit's NVS partition back from the board and compare it byte for byte."""
    read_flash = getattr(device, "read_flash", None)
    if read_flash is None:
        raise WrongTarget("this board cannot be read back, so it cannot take [unit_data]", device=device_id)
    back = bytes(read_flash(image.address, image.size))
    if back != image.data:
        first = next(i for i, (a, b) in enumerate(zip(back, image.data, strict=False)) if a != b) if back else 0
        raise VerifyMismatch(
            f"{image.name}: the NVS partition read back differs from what was written (first at byte {first})",
            device=device_id,
            address=image.address + first,
            hint="flash the board again",
        )


def finish_job(
    outcome: JobResult,
    plan: JobPlan,
    recorder: AttemptRecorder,
    ctx: JobContext,
    *,
    reported_firmware: str | None,
) -> JobResult | None:
    """Record and announce the outcome once: whichever of the job and the runner's timeout comes first."""
    with ctx.finish_lock:
        if ctx.finished:
            return None
        ctx.finished = True
    recorder.finish_attempt(
        outcome.attempt_id,
        AttemptResult.PASS if outcome.passed else AttemptResult.FAIL,
        outcome.reason.value if outcome.reason else None,
        None if outcome.passed else outcome.message,
        enqueue_product=plan.sync_product if outcome.passed else None,
        group=plan.sync_group if outcome.passed else None,
    )
    if outcome.passed:
        assert outcome.device_id is not None
        ctx.event(Passed, device_id=outcome.device_id, seconds=round(outcome.seconds, 3), firmware=reported_firmware)
    else:
        assert outcome.reason is not None
        ctx.event(
            Failed,
            device_id=outcome.device_id,
            reason=outcome.reason.value,
            message=outcome.message,
            seconds=round(outcome.seconds, 3),
        )
    result = "pass" if outcome.passed else "fail"
    ctx.event(Recorded, device_id=outcome.device_id, attempt_id=outcome.attempt_id, result=result)
    return outcome
