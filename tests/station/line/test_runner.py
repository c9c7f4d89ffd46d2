"""The runner's slot logic with in-memory devices: parallel jobs, wrong target, faults, hangs, re-plug."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from station.devices.base import (
    Device,
    DeviceDescription,
    DeviceIdentity,
    Family,
    FlashImage,
    Mode,
    Phase,
    Progress,
    ProgressCallback,
    no_progress,
)
from station.discovery.base import Candidate
from station.errors import DeviceDisconnected
from station.line.events import Event
from station.line.plan import JobPlan, Target
from station.line.runner import LineRunner


class MemoryDevice(Device):
    def __init__(self, slot: str, device_id: str, platform_id: int = 12, behaviour: str = "ok") -> None:
        self.slot, self.device_id, self.platform_id, self.behaviour = slot, device_id, platform_id, behaviour
        self.flash_memory: dict[int, bytes] = {}
        self.closed = threading.Event()

    def describe(self) -> DeviceDescription:
        return DeviceDescription(Family.PARTICLE_DFU, self.slot, Mode.DFU, 0x2B04, 0xD00C, self.device_id)

    def identify(self) -> DeviceIdentity:
        return DeviceIdentity(self.device_id, {12: "argon", 6: "photon"}[self.platform_id], self.platform_id)

    def flash(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        for image in images:
            for done in range(0, image.size + 1, 256):
                if self.behaviour == "fail-mid-write" and done >= image.size // 2:
                    raise DeviceDisconnected("device vanished", device=self.device_id, block=done // 256)
                if self.behaviour == "hang":
                    self.closed.wait(30)
                    raise DeviceDisconnected("closed while writing", device=self.device_id)
                progress(Progress(Phase.WRITE, done, image.size, image.name))
            self.flash_memory[image.address] = image.data

    def verify(self, images: Sequence[FlashImage], progress: ProgressCallback = no_progress) -> None:
        for image in images:
            assert self.flash_memory[image.address] == image.data

    def restart(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


class MemorySource:
    def __init__(self) -> None:
        self.devices: dict[str, MemoryDevice] = {}

    def scan(self) -> list[Candidate]:
        return [Candidate(d.describe(), lambda d=d: d) for d in list(self.devices.values())]

    def close(self) -> None:
        pass


class MemoryRecorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: dict[int, dict[str, object]] = {}
        self.enqueued: list[str] = []

    def start_attempt(self, *, slot: str, label: str, plan: JobPlan) -> int:
        with self.lock:
            attempt_id = len(self.attempts) + 1
            self.attempts[attempt_id] = {"slot": slot, "label": label, "result": "running"}
            return attempt_id

    def identified(self, attempt_id: int, *, device_id: str, platform: str) -> None:
        with self.lock:
            self.attempts[attempt_id]["device_id"] = device_id

    def phase_done(self, attempt_id: int, *, phase: str, seconds: float) -> None:
        pass

    def finish(
        self, attempt_id: int, *, passed: bool, reason: str | None, message: str | None, enqueue_product: str | None
    ) -> None:
        with self.lock:
            assert self.attempts[attempt_id]["result"] == "running", "an attempt was finished twice"
            self.attempts[attempt_id].update(result="pass" if passed else "fail", reason=reason, message=message)
            if enqueue_product:
                self.enqueued.append(str(self.attempts[attempt_id]["device_id"]))


def _plan(timeout: float = 5.0) -> JobPlan:
    image = FlashImage("app", bytes(range(256)) * 16, 0xD4000)
    target = Target(platform_id=12, platform_name="argon")
    return JobPlan("line-1", target, (image,), job_timeout=timeout, sync_product="1234")


def _run_until(runner: LineRunner, done: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        runner.poll()
        if done():
            return
        time.sleep(0.02)
    raise AssertionError("line did not settle in time")


def test_parallel_slots_each_get_their_own_outcome() -> None:
    source, recorder, events = MemorySource(), MemoryRecorder(), []
    lock = threading.Lock()

    def sink(e: Event) -> None:
        with lock:
            events.append(e.to_json())

    source.devices = {
        "1-1.1": MemoryDevice("1-1.1", "a" * 24),
        "1-1.2": MemoryDevice("1-1.2", "b" * 24, platform_id=6),
        "1-1.3": MemoryDevice("1-1.3", "c" * 24, behaviour="fail-mid-write"),
        "1-1.4": MemoryDevice("1-1.4", "d" * 24, behaviour="hang"),
    }
    runner = LineRunner([source], _plan(timeout=0.5), recorder, sink, label=lambda s: "A" + s[-1], poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and len(recorder.attempts) == 4)
    runner.drain()

    results = {a["slot"]: a for a in recorder.attempts.values()}
    assert results["1-1.1"]["result"] == "pass"
    assert results["1-1.2"]["reason"] == "wrong-target"
    assert "photon" in str(results["1-1.2"]["message"])
    assert results["1-1.3"]["reason"] == "disconnected"
    assert results["1-1.4"]["reason"] == "timeout"
    assert recorder.enqueued == ["a" * 24]
    # Nothing was written to the wrong-platform board.
    assert source.devices["1-1.2"].flash_memory == {}
    kinds = [(e["event"], e["slot"]) for e in events]
    for slot in source.devices:
        assert ("attached", slot) in kinds and ("recorded", slot) in kinds
    assert {e["label"] for e in events if e["event"] == "passed"} == {"A1"}

    # Re-plugging the failed board (now healthy) retries it by itself.
    del source.devices["1-1.3"]
    runner.poll()
    assert ("detached", "1-1.3") in [(e["event"], e["slot"]) for e in events]
    source.devices["1-1.3"] = MemoryDevice("1-1.3", "c" * 24)
    _run_until(runner, lambda: sum(1 for a in recorder.attempts.values() if a["result"] == "pass") == 2)
    runner.drain()
    assert recorder.enqueued == ["a" * 24, "c" * 24]


def test_retry_key_reruns_a_failed_slot_only() -> None:
    source, recorder = MemorySource(), MemoryRecorder()
    device = MemoryDevice("1-2", "e" * 24, behaviour="fail-mid-write")
    source.devices = {"1-2": device}
    runner = LineRunner([source], _plan(), recorder, lambda e: None, poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and len(recorder.attempts) == 1)
    runner.drain()
    device.behaviour = "ok"
    assert runner.retry("1-2")
    runner.drain()
    assert [a["result"] for a in recorder.attempts.values()] == ["fail", "pass"]
    assert not runner.retry("1-2")  # a passed slot is not re-flashed by the retry key


def test_progress_events_are_throttled() -> None:
    source, recorder, events = MemorySource(), MemoryRecorder(), []
    source.devices = {"1-3": MemoryDevice("1-3", "f" * 24)}
    runner = LineRunner([source], _plan(), recorder, lambda e: events.append(e.to_json()), poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and len(recorder.attempts) == 1)
    runner.drain()
    progress = [e for e in events if e["event"] == "progress"]
    # 17 progress callbacks in well under a second: the first and the last get through, not all.
    assert 2 <= len(progress) < 17
    assert progress[-1]["done"] == progress[-1]["total"]
