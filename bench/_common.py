"""Shared pieces of the line benchmarks: the images each family flashes, a line on a simulated bench
with a real registry in a temporary folder, and a description of the machine the numbers come from.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from firmware_tools.bundle.images import describe_particle
from firmware_tools.checks import Expectations
from firmware_tools.esp import build_app_image
from firmware_tools.esp.esptool_bridge import load_image
from firmware_tools.esp.image import parse_esp_image
from firmware_tools.particle import Dependency, ModuleFunction, pack_module, platform_id_from
from station.demo.sample_release import blinky_payload
from station.demo.simulated_bench import SimDeviceSpec, SimulatedBench
from station.devices.base import FlashImage
from station.discovery.base import Candidate
from station.line.events import Event, Passed, Recorded
from station.line.plan import JobPlan, Target
from station.line.runner import DEFAULT_POLL_INTERVAL, LineRunner
from station.store import Registry, RunContext, Slot

T = TypeVar("T")

KIB = 1024
# A real Photon user part slot is 128 KiB; the module (prefix, payload, suffix, CRC) fills it.
PHOTON_USER_PART_BYTES = 128 * KIB
# Argon system part 1 lives at 0x30000 (nRF52840); Device OS 6 builds it at about 600 KiB.
ARGON_SYSTEM_PART_ADDRESS = 0x30000
ARGON_SYSTEM_PART_BYTES = 600 * KIB
# Gen3 user part 2 (Device OS 3.1+): up to 256 KiB; a 128 KiB app is a typical product.
ARGON_USER_PART_BYTES = 128 * KIB
ESP_APP_BYTES = 1024 * KIB
ESP_APP_ADDRESS = 0x10000
# The station's default ESP baud (ESP-IDF's `idf.py flash` 460800; station.devices.esp.DEFAULT_BAUD).
ESP_BAUD = 460800
# The line's default scan interval (LineSession / `station run`).
LINE_POLL_INTERVAL = DEFAULT_POLL_INTERVAL
_GEN2 = {"photon", "p1", "electron"}


def _module_image(
    platform: str, function: ModuleFunction, index: int, total: int, *, address: int | None = None, name: str
) -> FlashImage:
    def pack(payload: bytes) -> bytes:
        return pack_module(
            payload,
            platform_id=platform_id_from(platform),
            function=function,
            index=index,
            start_address=address,
            dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, 6200)]
            if function is ModuleFunction.USER_PART
            else [],
        )

    # Prefix, suffix and CRC around the payload: the module as a whole is ``total`` bytes.
    overhead = len(pack(b""))
    data = pack(blinky_payload(total - overhead, seed=name))
    assert len(data) == total
    facts = describe_particle(data, name=name, expect=Expectations())
    return FlashImage(
        name,
        data,
        facts.address,
        kind="system-part" if function is ModuleFunction.SYSTEM_PART else "user-part",
        module_function=int(function),
        module_index=index,
        platform_id=platform_id_from(platform),
    )


def photon_user_part() -> FlashImage:
    return _module_image("photon", ModuleFunction.USER_PART, 1, PHOTON_USER_PART_BYTES, name="photon-app.bin")


def argon_system_part() -> FlashImage:
    return _module_image(
        "argon",
        ModuleFunction.SYSTEM_PART,
        1,
        ARGON_SYSTEM_PART_BYTES,
        address=ARGON_SYSTEM_PART_ADDRESS,
        name="argon-system-part1.bin",
    )


def argon_user_part() -> FlashImage:
    return _module_image("argon", ModuleFunction.USER_PART, 2, ARGON_USER_PART_BYTES, name="argon-app.bin")


def code_like(size: int, seed: int = 1) -> bytes:
    """Bytes that compress like compiled code: 32-bit words drawn, Zipf-like, from a vocabulary.

    zlib level 9 takes them to about 59% of their size, as esptool reports for ESP-IDF apps.
    """
    rng = random.Random(seed)
    vocabulary = [rng.randbytes(4) for _ in range(16384)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    words = rng.choices(vocabulary, weights=weights, k=-(-size // 4))
    return b"".join(words)[:size]


def _xor(chunk: bytes) -> int:
    value = 0
    for byte in chunk:
        value ^= byte
    return value


def esp_app(chip: str = "esp32", size: int = ESP_APP_BYTES) -> FlashImage:
    """A valid ESP app image of exactly ``size`` bytes whose code compresses like a real app's."""
    # The image adds headers, rodata, IRAM/DRAM segments and a digest around the code payload.
    overhead = len(build_app_image(chip=chip, payload_size=0, project_name="bench-app"))
    built = build_app_image(chip=chip, payload_size=max(0, size - overhead), project_name="bench-app", version="1.0.0")
    # The encoder's code is random (incompressible): put code-like words in its place and reseal
    # the image (checksum and SHA-256) the way firmware_tools.esp.reseal does.
    facts = parse_esp_image(built)
    segment = max(load_image(chip, built).segments, key=lambda seg: len(seg.data))
    old = segment.data
    new = code_like(len(old))
    out = bytearray(built)
    start = segment.file_offs + 8  # esptool records where the 8-byte segment header starts
    out[start : start + len(old)] = new
    out[facts.checksum_offset] = facts.checksum_stored ^ _xor(old) ^ _xor(new)
    if facts.hash_appended:
        sealed_end = facts.checksum_offset + 1
        out[sealed_end : sealed_end + 32] = hashlib.sha256(out[:sealed_end]).digest()
    data = bytes(out)
    checked = parse_esp_image(data)
    assert checked.checksum_ok and checked.sha256_ok is not False
    return FlashImage("bench-app.bin", data, ESP_APP_ADDRESS, kind="app")


def particle_plan(platform: str, images: Sequence[FlashImage], station: str = "bench") -> JobPlan:
    platform_id = platform_id_from(platform)
    return JobPlan(station, Target(platform_id=platform_id, platform_name=platform), tuple(images), job_timeout=600)


def esp_plan(images: Sequence[FlashImage], chip: str = "esp32", station: str = "bench") -> JobPlan:
    return JobPlan(station, Target(chip=chip), tuple(images), job_timeout=600)


@dataclass
class Outcome:
    """One board's way through the line, as the events tell it (monotonic seconds)."""

    slot: str
    attached_at: float
    recorded_at: float | None = None
    passed: bool | None = None
    job_seconds: float | None = None  # what the job itself reports (connect .. restart)
    message: str = ""

    @property
    def wall(self) -> float:
        assert self.recorded_at is not None
        return self.recorded_at - self.attached_at


class TimedRecorder:
    """The registry as the job sees it, noting when each committed transition started and how long it took."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self.calls: list[tuple[float, float, str, str]] = []  # (start, seconds, call, argument)

    def _timed(self, name: str, arg: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.calls.append((start, time.monotonic() - start, name, arg))

    def start_attempt(self, slot: Slot, context: RunContext) -> int:
        return self._timed("start_attempt", slot.port_path, self.registry.start_attempt, slot, context)

    def record_phase(self, attempt_id: int, phase: str) -> None:
        self._timed("record_phase", phase, self.registry.record_phase, attempt_id, phase)

    def identify(self, attempt_id: int, device_id: str, platform: str) -> str:
        return self._timed("identify", device_id, self.registry.identify, attempt_id, device_id, platform)

    def finish_attempt(self, attempt_id: int, result: Any, *args: Any, **kwargs: Any) -> None:
        self._timed("finish_attempt", str(result), self.registry.finish_attempt, attempt_id, result, *args, **kwargs)


@dataclass
class LineUnderTest:
    """Runners (one per target) over one simulated bench and one registry, polling from a thread."""

    bench: SimulatedBench
    registry: Registry
    recorder: TimedRecorder
    runners: list[LineRunner]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._done = threading.Condition(self._lock)

    def sink(self, event: Event) -> None:
        now = time.monotonic()
        with self._lock:
            outcome = self.outcomes.get(event.slot)
            if outcome is None:
                return
            if isinstance(event, Passed):
                outcome.job_seconds = event.seconds
            if isinstance(event, Recorded):
                outcome.recorded_at = now
                outcome.passed = event.result == "pass"
                self._done.notify_all()
            message = getattr(event, "message", None)
            if message:
                outcome.message = str(message)

    def attach(self, specs: Sequence[SimDeviceSpec]) -> list[str]:
        """Plug boards in (all at once, as fast as the simulator starts them); returns their slots."""
        slots = []
        for spec in specs:
            now = time.monotonic()
            # The outcome must exist before the runner can see the board.
            with self._lock:
                slot = f"sim-{len(self.outcomes) + 1}"
                self.outcomes[slot] = Outcome(slot, now)
            got = self.bench.attach(spec)
            assert got == slot, (got, slot)
            slots.append(slot)
        return slots

    def wait(self, slots: Sequence[str], timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(self.outcomes[s].recorded_at is None for s in slots):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"the line did not record {list(slots)} within {timeout:.0f} s")
                self._done.wait(left)
            return [self.outcomes[s] for s in slots]


@contextmanager
def line(
    plans: Sequence[tuple[JobPlan, set[str]]],
    *,
    poll_interval: float = LINE_POLL_INTERVAL,
    seed: int = 7,
    esp_options: dict[str, Any] | None = None,
) -> Iterator[LineUnderTest]:
    """A running line: one LineRunner per (plan, families it takes), all scanning one simulated bench
    (timing model on) and recording into one real registry in a temporary folder. ``esp_options``:
    what `station run` gives every ESP board from the profile and bundle (PreparedLine.esp_options)."""
    folder = Path(tempfile.mkdtemp(prefix="benchflash-bench-"))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    bench = SimulatedBench(timing=True, rng=random.Random(seed), esp_options=esp_options)
    try:
        registry = Registry(folder / "station.db")
        lut = LineUnderTest(bench, registry, TimedRecorder(registry), [])
        for plan, families in plans:
            source = _FamilyFilter(bench, families)
            runner = LineRunner([source], plan, lut.recorder, lut.sink, poll_interval=poll_interval)
            lut.runners.append(runner)
            thread = threading.Thread(target=runner.run, args=(stop,), name=f"runner-{plan.station_id}", daemon=True)
            threads.append(thread)
            thread.start()
        yield lut
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        bench.close()
        shutil.rmtree(folder, ignore_errors=True)


class _FamilyFilter:
    """A Source showing a runner only the boards its plan is for (mixed families share a bench)."""

    def __init__(self, bench: SimulatedBench, families: set[str]) -> None:
        self._bench = bench
        self._families = families

    def scan(self) -> list[Candidate]:
        return [c for c in self._bench.scan() if c.description.family.value in self._families]

    def close(self) -> None:
        return None


def machine() -> str:
    """`nproc`, CPU model and Python version, as the results table records them."""
    model = platform.processor() or "unknown CPU"
    try:
        for line_ in Path("/proc/cpuinfo").read_text().splitlines():
            if line_.startswith("model name"):
                model = line_.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {model}, Python {platform.python_version()}"


def ratio_line(label: str, measured: float, bound: float, target: float) -> str:
    ratio = measured / bound
    verdict = "meets" if ratio <= target else "misses"
    return f"{label:<40} {measured:7.3f} s  bound {bound:7.3f} s  ratio {ratio:5.3f}  ({verdict} target {target:.2f})"


# ---- simulators out of the station's process -------------------------------------------------

SIM_HOST = Path(__file__).with_name("_sim_host.py")


class ExternalBench:
    """Boards served by simulator host processes (``bench/_sim_host.py``), seen by the line as
    ports; ``attach`` plugs one in (its candidate appears in the scan). The station's process does
    none of the boards' work, as with real hardware."""

    def __init__(self, family: str, count: int, processes: int) -> None:
        import json
        import subprocess
        import sys

        self.family = family
        self._procs: list[subprocess.Popen[str]] = []
        self._free: list[str] = []
        self._visible: dict[str, Candidate] = {}
        self._lock = threading.Lock()
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        try:
            for share in (s for s in shares if s):
                proc = subprocess.Popen(
                    [sys.executable, str(SIM_HOST), family, str(share)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                self._procs.append(proc)
            for proc in self._procs:
                assert proc.stdout is not None
                for line_text in proc.stdout:
                    message = json.loads(line_text)
                    if message.get("ready"):
                        break
                    self._free.append(str(message["port"]))
            if len(self._free) != count:
                raise SystemExit(f"simulator hosts started {len(self._free)} boards, not {count}")
        except BaseException:
            self.close()
            raise

    def _candidate(self, port: str) -> Candidate:
        from station.devices.base import DeviceDescription, Family, Mode

        if self.family == "esp":
            from station.devices.esp import EspDevice

            def open_esp() -> Any:
                return EspDevice(port, port_path=port, baud=ESP_BAUD)

            description = DeviceDescription(Family.ESP, port, Mode.BOOTLOADER, serial_port=port)
            return Candidate(description, open_esp)
        from station.devices.particle_serial import ParticleSerialDevice

        def open_serial() -> Any:
            return ParticleSerialDevice(port, port_path=port)

        description = DeviceDescription(Family.PARTICLE_SERIAL, port, Mode.LISTENING, serial_port=port)
        return Candidate(description, open_serial)

    def attach_next(self) -> str:
        with self._lock:
            port = self._free.pop(0)
            self._visible[port] = self._candidate(port)
            return port

    def scan(self) -> list[Candidate]:
        with self._lock:
            return list(self._visible.values())

    def close(self) -> None:
        for proc in self._procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()


@contextmanager
def external_line(
    plan: JobPlan, bench: ExternalBench, *, poll_interval: float = LINE_POLL_INTERVAL
) -> Iterator[LineUnderTest]:
    """One LineRunner scanning ``bench``'s ports and recording into a real registry (temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix="benchflash-bench-"))
    stop = threading.Event()
    registry = Registry(folder / "station.db")
    lut = LineUnderTest(bench, registry, TimedRecorder(registry), [])  # type: ignore[arg-type]
    runner = LineRunner([bench], plan, lut.recorder, lut.sink, poll_interval=poll_interval)
    lut.runners.append(runner)
    thread = threading.Thread(target=runner.run, args=(stop,), name="runner", daemon=True)
    thread.start()
    try:
        yield lut
    finally:
        stop.set()
        thread.join(timeout=60)
        registry.close()
        shutil.rmtree(folder, ignore_errors=True)


def attach_external(lut: LineUnderTest, bench: ExternalBench, count: int) -> list[str]:
    """Plug ``count`` boards of ``bench`` in at once; returns their slots (the ports)."""
    slots = []
    for _ in range(count):
        with lut._lock:
            # The outcome must exist before the runner can see the board.
            port = bench._free[0]
            lut.outcomes[port] = Outcome(port, time.monotonic())
        slots.append(bench.attach_next())
    return slots
