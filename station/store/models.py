"""The registry's values: what the line hands in per attempt and what reports hand back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AttemptResult(StrEnum):
    RUNNING = "running"
    PASS = "pass"
    FAIL = "fail"
    INTERRUPTED = "interrupted"  # the station stopped (crash, power cut, quit) before the attempt ended


FINAL_RESULTS = frozenset({AttemptResult.PASS, AttemptResult.FAIL, AttemptResult.INTERRUPTED})


@dataclass(frozen=True)
class Slot:
    """A physical port of the bench: its USB path (the key) and the label the technician reads."""

    port_path: str
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.port_path


@dataclass(frozen=True)
class ImageDigest:
    """One image an attempt writes, by name and SHA-256 (hex)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class RunContext:
    """What stays the same for every attempt of one run of the line: station, operator, release."""

    station_id: str
    operator: str | None = None
    bundle_id: str | None = None
    bundle_sha256: str | None = None
    product_id: int | None = None
    product_version: int | None = None
    images: tuple[ImageDigest, ...] = ()


@dataclass(frozen=True)
class PhaseTiming:
    phase: str
    started_at: float
    ended_at: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt as recorded; times are unix seconds."""

    id: int
    device_id: str | None
    platform: str | None
    slot: Slot
    context: RunContext
    started_at: float
    ended_at: float | None
    result: AttemptResult
    phase: str | None  # the last phase entered: where an interrupted or failed attempt stopped
    error_code: str | None
    error_message: str | None
    phases: tuple[PhaseTiming, ...] = ()
    unit_serial: str | None = None  # the serial number reserved for this board ([unit_data])
    unit_data: str | None = None  # JSON: the NVS namespace and rows written and read back

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class DeviceRecord:
    """A device as the registry knows it; ``passed_at`` is when it first passed (None: never)."""

    device_id: str
    platform: str
    first_seen: float
    last_seen: float
    attempts: int
    last_result: AttemptResult | None
    last_error_code: str | None
    passed_at: float | None


@dataclass(frozen=True)
class ReasonCount:
    code: str
    count: int


@dataclass(frozen=True)
class LineCount:
    """Attempts of one station making one product version."""

    station_id: str
    product_id: int | None
    product_version: int | None
    attempts: int
    passed: int
    failed: int
    interrupted: int


@dataclass(frozen=True)
class Stats:
    """Counts over a window (``since`` .. now; all time when ``since`` is None).

    Attempt counts count attempts; device counts count distinct devices. First-pass yield is the
    share of devices whose first finished attempt (pass or fail; interruptions are the station's,
    not the device's) passed, over devices first tested in the window. Devices per hour divides the
    devices that passed in the window by the span from its first attempt's start to its last event.
    """

    since: float | None
    attempts: int
    attempts_passed: int
    attempts_failed: int
    attempts_interrupted: int
    attempts_running: int
    devices_seen: int
    devices_passed: int
    devices_failing: int  # seen failing in the window and not passed in it: boards for rework
    first_pass_yield: float | None
    devices_per_hour: float | None
    first_started_at: float | None
    last_event_at: float | None
    failures_by_reason: tuple[ReasonCount, ...]
    by_line: tuple[LineCount, ...]
