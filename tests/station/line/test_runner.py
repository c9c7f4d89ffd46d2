"""The runner's slot logic with in-memory devices: parallel jobs, wrong target, faults, hangs, re-plug."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
from station.profile import LineMode
from station.store import AttemptResult, Registry


class MemoryDevice(Device):
    def __init__(
        self, slot: str, device_id: str, platform_id: int = 12, behaviour: str = "ok", mode: Mode = Mode.DFU
    ) -> None:
        self.slot, self.device_id, self.platform_id, self.behaviour = slot, device_id, platform_id, behaviour
        self.mode = mode
        self.flash_memory: dict[int, bytes] = {}
        self.closed = threading.Event()

    def describe(self) -> DeviceDescription:
        return DeviceDescription(Family.PARTICLE_DFU, self.slot, self.mode, 0x2B04, 0xD00C, self.device_id)

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

    def running_firmware(self) -> str | None:
        return "DFU mode" if self.behaviour == "no-boot" else "Device OS 6.2.0"

    def confirm(self, images: Sequence[FlashImage]) -> bool | None:
        return False if self.behaviour == "no-boot" else None

    def close(self) -> None:
        self.closed.set()


class MemorySource:
    def __init__(self) -> None:
        self.devices: dict[str, MemoryDevice] = {}

    def scan(self) -> list[Candidate]:
        return [Candidate(d.describe(), lambda d=d: d) for d in list(self.devices.values())]

    def close(self) -> None:
        pass


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


def _results(registry: Registry) -> dict[str, list[tuple[str, str | None, str | None]]]:
    by_slot: dict[str, list[tuple[str, str | None, str | None]]] = {}
    for a in registry.history():
        by_slot.setdefault(a.slot.port_path, []).append((a.result.value, a.error_code, a.error_message))
    return by_slot


def _finished(registry: Registry, n: int) -> bool:
    return sum(1 for a in registry.history() if a.result is not AttemptResult.RUNNING) >= n


def _enqueued(registry: Registry) -> list[str]:
    return sorted(e.device_id for e in registry.outbox.entries())


def test_parallel_slots_each_get_their_own_outcome(tmp_path: Path) -> None:
    source, recorder, events = MemorySource(), Registry(tmp_path / "station.db"), []
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
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 4))
    runner.drain()

    results = _results(recorder)
    assert results["1-1.1"] == [("pass", None, None)]
    assert results["1-1.2"][0][:2] == ("fail", "wrong-target")
    assert "photon" in str(results["1-1.2"][0][2])
    assert results["1-1.3"][0][:2] == ("fail", "disconnected")
    assert results["1-1.4"][0][:2] == ("fail", "timeout")
    assert _enqueued(recorder) == ["a" * 24]
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
    _run_until(runner, lambda: _finished(recorder, 5))
    runner.drain()
    assert _results(recorder)["1-1.3"][-1] == ("pass", None, None)
    assert _enqueued(recorder) == ["a" * 24, "c" * 24]
    assert recorder.check_consistency() == ()


def test_retry_key_reruns_a_failed_slot_only(tmp_path: Path) -> None:
    source, recorder = MemorySource(), Registry(tmp_path / "station.db")
    device = MemoryDevice("1-2", "e" * 24, behaviour="fail-mid-write")
    source.devices = {"1-2": device}
    runner = LineRunner([source], _plan(), recorder, lambda e: None, poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 1))
    runner.drain()
    device.behaviour = "ok"
    assert runner.retry("1-2")
    runner.drain()
    assert [r[0] for r in _results(recorder)["1-2"]] == ["fail", "pass"]
    assert not runner.retry("1-2")  # a passed slot is not re-flashed by the retry key


def test_progress_events_are_throttled(tmp_path: Path) -> None:
    source, recorder, events = MemorySource(), Registry(tmp_path / "station.db"), []
    source.devices = {"1-3": MemoryDevice("1-3", "f" * 24)}
    runner = LineRunner([source], _plan(), recorder, lambda e: events.append(e.to_json()), poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 1))
    runner.drain()
    progress = [e for e in events if e["event"] == "progress"]
    # 17 progress callbacks in well under a second: the first and the last get through, not all.
    assert 2 <= len(progress) < 17
    assert progress[-1]["done"] == progress[-1]["total"]


def test_a_board_that_does_not_boot_the_new_firmware_fails_after_verify(tmp_path: Path) -> None:
    source, recorder, events = MemorySource(), Registry(tmp_path / "station.db"), []
    source.devices = {"1-4": MemoryDevice("1-4", "9" * 24, behaviour="no-boot")}
    runner = LineRunner([source], _plan(), recorder, lambda e: events.append(e.to_json()), poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 1))
    runner.drain()
    [(result, code, message)] = _results(recorder)["1-4"]
    assert (result, code) == ("fail", "verify-mismatch")
    assert "DFU mode" in str(message)
    assert _enqueued(recorder) == []


def test_identify_only_mode_records_and_queues_without_writing(tmp_path: Path) -> None:
    # Firmware over the air at setup: the line only identifies and records each board.
    source, recorder = MemorySource(), Registry(tmp_path / "station.db")
    source.devices = {"1-5": MemoryDevice("1-5", "7" * 24), "1-6": MemoryDevice("1-6", "8" * 24, platform_id=6)}
    plan = dataclasses.replace(_plan(), mode=LineMode.IDENTIFY)
    runner = LineRunner([source], plan, recorder, lambda e: None, poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 2))
    runner.drain()
    results = _results(recorder)
    assert results["1-5"] == [("pass", None, None)]
    assert results["1-6"][0][:2] == ("fail", "wrong-target")  # the target is still checked
    assert all(d.flash_memory == {} for d in source.devices.values())
    assert _enqueued(recorder) == ["7" * 24]


def test_a_passed_board_rebooting_into_its_firmware_is_not_flashed_again(tmp_path: Path) -> None:
    source, recorder, events = MemorySource(), Registry(tmp_path / "station.db"), []
    board = MemoryDevice("1-7", "a" * 24)
    source.devices = {"1-7": board}
    runner = LineRunner([source], _plan(), recorder, lambda e: events.append(e.to_json()), poll_interval=0.01)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 1))

    # It leaves DFU mode, drops off the bus, and comes back in normal mode running the new app.
    del source.devices["1-7"]
    runner.poll()
    source.devices["1-7"] = MemoryDevice("1-7", "a" * 24, mode=Mode.NORMAL)
    _run_until(runner, lambda: any(e["event"] == "rebooted" for e in events))
    runner.drain()
    assert len(recorder.history()) == 1  # no second attempt, nothing written again
    assert source.devices["1-7"].flash_memory == {}
    assert not runner.retry("1-7")  # the slot is a PASS

    # A different board put in that slot soon after, in normal mode, gets its job.
    del source.devices["1-7"]
    runner.poll()
    source.devices["1-7"] = MemoryDevice("1-7", "b" * 24, mode=Mode.NORMAL)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 2))
    runner.drain()
    assert [a.device_id for a in recorder.history()] == ["a" * 24, "b" * 24]

    # The passed board re-plugged in DFU mode on purpose is flashed again.
    del source.devices["1-7"]
    runner.poll()
    source.devices["1-7"] = MemoryDevice("1-7", "b" * 24, mode=Mode.DFU)
    _run_until(runner, lambda: runner.running() == 0 and _finished(recorder, 3))
    assert len(recorder.history()) == 3
