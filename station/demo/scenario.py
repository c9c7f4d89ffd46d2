"""`station demo`: a shift on simulated boards, end to end, in under a minute.

It builds a sample product bundle with the project's own tools (a packed blinky-like module and a
throwaway key), starts a simulated cloud console, and plugs simulated boards of several families
into a simulated bench over time — one of the wrong platform, one of the wrong family, one that
fails mid-write and is re-plugged — while the real line runs them, records them in a temporary
registry and imports every PASS into the console. It ends with the stats and the export file.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from station.demo.sample_release import make_sample_release
from station.demo.simulated_bench import SimulatedBench, parse_simulate_spec
from station.line.events import Event, EventSink, Recorded
from station.line_setup import PreparedLine, prepare_line
from station.session import LineSession
from station.store import OutboxState, Registry

if TYPE_CHECKING:
    from station.cloud.token import AccessToken
    from station.sim.console import SimConsole

PRODUCT_ID = 4242
PRODUCT_VERSION = 3
TARGET = "argon"
TOKEN_ENV = "BENCHFLASH_DEMO_TOKEN"


@dataclass(frozen=True)
class Step:
    """At ``at`` seconds into the shift, plug in ``spec`` (a --simulate spec of one board)."""

    at: float
    spec: str
    note: str


# What the technician does during the demo shift.
TIMELINE: tuple[Step, ...] = (
    Step(0.0, "argon-dfu", "an Argon in DFU mode"),
    Step(0.3, "argon-dfu", "another Argon"),
    Step(0.8, "argon-serial", "an Argon in listening mode (serial, YModem)"),
    Step(1.5, "photon-dfu", "a Photon: the wrong platform, refused before anything is written"),
    Step(2.0, "argon-dfu!disconnect@1", "an Argon whose cable drops mid-write; re-plugged, it passes"),
    Step(2.5, "esp32", "an ESP32 on a USB-serial bridge: the wrong family for this bundle"),
    Step(6.0, "argon-dfu", "a second batch of Argons"),
    Step(6.3, "argon-dfu", "and another"),
)
LABELS = ("A1", "A2", "A3", "A4", "A5", "A6", "B1", "B2")
# How long a finished board stays on the bench before the technician takes it off.
REMOVE_AFTER = 1.5


@dataclass
class DemoResult:
    folder: Path
    registry: Path
    export_file: Path
    synced: int = 0
    pending: int = 0
    seconds: float = 0.0
    rollout: list[str] = field(default_factory=list)  # what the console rollout did, line by line


def write_profile(folder: Path, bundle: Path, console_url: str) -> Path:
    slots = "\n".join(f'"sim-{i}" = "{label}"' for i, label in enumerate(LABELS, 1))
    profile = folder / "demo-line.toml"
    profile.write_text(
        f'station_id = "demo-line"\nbundle = "{bundle.name}"\ntrusted_keys = ["release.pub"]\n'
        f'operator = "demo"\njob_timeout = 60\n\n[slots]\n{slots}\n\n'
        f'[cloud]\nproduct = "{PRODUCT_ID}"\nbase_url = "{console_url}"\ntoken_env = "{TOKEN_ENV}"\n'
        "batch_size = 4\n",
        encoding="utf-8",
    )
    return profile


class _Technician:
    """Plugs boards in on the timeline, takes finished ones off, re-plugs the one that failed mid-write."""

    def __init__(self, bench: SimulatedBench, clock: Callable[[], float]) -> None:
        self.bench = bench
        self.clock = clock
        self.lock = threading.Lock()
        self.finished: dict[str, tuple[float, str]] = {}  # slot -> (when, result)
        self.replugged: set[str] = set()
        self.specs: dict[str, str] = {}
        self.removed: set[str] = set()
        self.passed: list[str] = []  # slots whose board passed, in order

    def on_event(self, event: Event) -> None:
        if isinstance(event, Recorded):
            with self.lock:
                self.finished[event.slot] = (self.clock(), event.result)
                if event.result == "pass":
                    self.passed.append(event.slot)

    def run(self, start: float, stop: threading.Event) -> None:
        pending = list(TIMELINE)
        while not stop.is_set():
            now = self.clock() - start
            while pending and pending[0].at <= now:
                step = pending.pop(0)
                slot = self.bench.attach(parse_simulate_spec(step.spec)[0])
                self.specs[slot] = step.spec
            self._tidy()
            if not pending and self._all_settled():
                return
            stop.wait(0.05)

    def _tidy(self) -> None:
        with self.lock:
            finished = dict(self.finished)
        for slot, (when, result) in finished.items():
            if slot in self.removed or self.clock() - when < REMOVE_AFTER:
                continue
            spec = self.specs.get(slot, "")
            if result == "fail" and "!" in spec and slot not in self.replugged:
                # The board with the loose cable: off the bench, back on, and the line retries it.
                self.bench.detach(slot)
                with self.lock:
                    del self.finished[slot]
                self.replugged.add(slot)
                self.bench.reattach(slot)
            else:
                self.bench.detach(slot)
                self.removed.add(slot)

    def _all_settled(self) -> bool:
        return len(self.removed) == len(self.specs)


def _rollout(
    line: PreparedLine, console: SimConsole, bench: SimulatedBench, test_slot: str, token: AccessToken
) -> list[str]:
    """The console guide's rollout on the demo product: upload the version read from the binary,
    find release refused while nothing runs it, lock a test device, let it report, release."""
    from station.cloud.backoff import Backoff
    from station.cloud.client import ParticleCloud
    from station.cloud.rollout import Retry, RolloutRefused, firmware_from_bundle, lock_device, release_firmware
    from station.cloud.rollout import upload_firmware as upload
    from station.sim.console_rollout import report_running_firmware

    assert line.cloud is not None
    product = line.cloud.product
    said: list[str] = []
    retry = Retry(Backoff(base=0.1, cap=1.0), max_failures=5)
    with ParticleCloud.from_config(line.cloud, token) as client:
        fw = firmware_from_bundle(line.bundle)
        upload(client, product, fw, retry)
        said.append(f"uploaded {fw.image_name} as product firmware version {fw.version} (read from the binary)")
        try:
            release_firmware(client, product, fw.version, retry)
        except RolloutRefused as exc:
            said.append(f"release refused, as it must be: {exc.message}")
        device_id = bench.device_id(test_slot)
        lock_device(client, product, device_id, fw.version, flash=True, retry=retry)
        said.append(f"locked test device {device_id} to version {fw.version}")
        image = line.plan.images[-1]
        # The board boots what its flash holds and tells the console at its handshake.
        held = bench.read_flash(test_slot, image.address, image.size)
        running = report_running_firmware(console, product, device_id, held)
        said.append(f"test device {device_id} came online running version {running}")
        outcome = release_firmware(client, product, fw.version, retry)
        said.append(f"released version {outcome.version}: {len(outcome.running)} device(s) run it")
    return said


def run_demo(folder: Path, sink: EventSink, *, timing: bool = True, console_latency: float = 0.0) -> DemoResult:
    """Run the demo shift in ``folder``; events go to ``sink`` (a dashboard or JSON lines)."""
    from station.cloud.token import AccessToken
    from station.sim.console import SimConsole
    from station.sim.console_http import ConsoleServer

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    release = make_sample_release(folder, target=TARGET, product_id=PRODUCT_ID, product_version=PRODUCT_VERSION)
    # Handed straight to the sync, never put in the environment: the profile's token_env shows
    # where a real line's token comes from.
    token = AccessToken(secrets.token_hex(20), source="the demo's simulated console")
    console = SimConsole.with_product(PRODUCT_ID, token.reveal(), platform_id=12, latency=console_latency)
    server = ConsoleServer(console, "127.0.0.1", 0).start()
    db = folder / "station.db"
    result = DemoResult(folder=folder, registry=db, export_file=folder / "import.txt")
    bench = SimulatedBench(timing=timing)
    registry = Registry(db)
    try:
        line = prepare_line(write_profile(folder, release.bundle, server.url))
        technician = _Technician(bench, time.monotonic)

        def fan_out(event: Event) -> None:
            technician.on_event(event)
            sink(event)

        session = LineSession(line, registry, [bench], fan_out, poll_interval=0.1)
        session.start_sync(token)
        stop = threading.Event()
        runner = threading.Thread(target=session.run, args=(stop,), name="demo-line", daemon=True)
        runner.start()
        technician.run(time.monotonic(), stop)
        # Give the sync thread its last batch, then end the shift.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and registry.outbox.counts(str(PRODUCT_ID))[OutboxState.PENDING]:
            if session.sync is not None:
                session.sync.wake()
            time.sleep(0.1)
        stop.set()
        runner.join(timeout=120)
        counts = registry.outbox.counts(str(PRODUCT_ID))
        result.synced, result.pending = counts[OutboxState.SYNCED], counts[OutboxState.PENDING]
        from station.store import ExportFormat, write_export

        write_export(registry, ExportFormat.TXT, result.export_file)
        result.rollout = _rollout(line, console, bench, technician.passed[0], token)
    finally:
        bench.close()
        registry.close()
        server.stop()
    result.seconds = time.monotonic() - started
    return result
