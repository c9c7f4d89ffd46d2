"""A bench of simulated boards behind one ``Source``: `--simulate SPEC`, `station demo`, and the tests.

Each board is the family's own simulator reached the way hardware is: DFU boards on one simulated
pyusb bus (found through the real pyusb enumeration path), each serial board on its own pty, each
ESP on its own TCP port (``socket://``). Boards can be attached and detached while a line runs.
Slots are named ``sim-N`` and never reused, except by ``reattach`` (the same board plugged back in).

Kinds: ``<platform>-dfu`` (a Particle board in DFU mode), ``<platform>-normal`` (one running its
firmware on USB, switched into DFU mode by the line), ``<platform>-serial`` (listening mode on a
pty), ``esp32``, ``esp32s3``, ``esp32c3``.

Spec grammar: entries joined by commas, each ``KIND[:COUNT][!FAULT...]``, e.g.
``photon-dfu:2,esp32:1,argon-serial:1`` or ``argon-dfu:1!disconnect@3``. Faults are those of
``station.sim.faults`` (``KIND[@N]``, N counted in the simulator's own unit) and apply to every
board of the entry.
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from firmware_tools.errors import FirmwareError
from firmware_tools.particle.parse import parse_module
from station.devices import esp as esp_family
from station.devices import particle_serial as serial_family
from station.devices.base import Device, DeviceDescription, Family, FlashImage
from station.devices.family import Bus, SeenPort
from station.discovery.base import Candidate
from station.discovery.probe import PeekableCandidate
from station.discovery.usb_dfu import UsbParticleSource
from station.errors import InputError
from station.sim.dfu_device import PLATFORM_SPECS, SimulatedDfuDevice
from station.sim.esp_chips import CHIPS
from station.sim.esp_loader import SimulatedEsp
from station.sim.faults import Fault, FaultPlan, parse_faults
from station.sim.particle_serial import PLATFORMS as SERIAL_PLATFORMS
from station.sim.particle_serial import SimulatedSerialDevice
from station.sim.timing import TimingModel
from station.sim.usb_backend import SimulatedUsbBackend

# Bounds that keep a typo ("esp32:1000000") from starting a million servers.
MAX_PER_ENTRY = 64
MAX_DEVICES = 256
_MAX_SPEC_CHARS = 4096

_ENTRY = re.compile(r"(?P<kind>[a-z0-9]+(?:-[a-z0-9]+)?)(?::(?P<count>[0-9]{1,6}))?(?P<faults>(?:![^!]*)*)", re.ASCII)
# The bridge a simulated ESP board pretends to sit behind: the family table's first (a CP2102N).
_ESP_BRIDGE = esp_family.FAMILY.usb_ids[0]
# A Secure Download Mode board is reached on the chip's own USB-Serial/JTAG port instead.
# Picked from the family table by name, so no USB ID is copied outside it.
_ESP_USB_JTAG = next(u for u in esp_family.FAMILY.usb_ids if "USB-Serial/JTAG" in u.name)


@dataclass(frozen=True)
class SimDeviceSpec:
    """One simulated board to attach: its family, platform (Particle) or chip key (ESP), its faults."""

    family: Family
    model: str  # "photon", "argon", ... for Particle; "esp32", "esp32s3", "esp32c3" for ESP
    faults: tuple[Fault, ...] = ()
    device_id: str | None = None  # Particle: 24 hex digits; ESP: the MAC "aa:bb:..."; None = drawn at random
    normal_mode: bool = False  # a USB Particle board running its firmware ("argon-normal"): the line switches it
    # ESP: eFuses in Secure Download Mode ("esp32s3-sdm"), on its USB-Serial/JTAG port (serial number = MAC)
    secure_download: bool = False

    @property
    def kind(self) -> str:
        if self.family is Family.PARTICLE_DFU:
            return f"{self.model}-{'normal' if self.normal_mode else 'dfu'}"
        if self.family is Family.PARTICLE_SERIAL:
            return f"{self.model}-serial"
        return f"{self.model}-sdm" if self.secure_download else self.model

    def __str__(self) -> str:
        return self.kind + "".join(f"!{f}" for f in self.faults)


def valid_kinds() -> tuple[str, ...]:
    """Every kind a spec may name, sorted."""
    kinds = [f"{p}-dfu" for p in PLATFORM_SPECS]
    kinds += [f"{p}-normal" for p in PLATFORM_SPECS]
    kinds += [f"{p}-serial" for p in SERIAL_PLATFORMS]
    kinds += list(CHIPS)
    kinds += [f"{c}-sdm" for c, profile in CHIPS.items() if profile.chip_id is not None]
    return tuple(sorted(kinds))


def _spec_for_kind(kind: str) -> SimDeviceSpec | None:
    if kind in CHIPS:
        return SimDeviceSpec(Family.ESP, kind)
    model, _, suffix = kind.rpartition("-")
    if suffix == "sdm" and model in CHIPS and CHIPS[model].chip_id is not None:
        return SimDeviceSpec(Family.ESP, model, secure_download=True)
    if suffix in ("dfu", "normal") and model in PLATFORM_SPECS:
        return SimDeviceSpec(Family.PARTICLE_DFU, model, normal_mode=suffix == "normal")
    if suffix == "serial" and model in SERIAL_PLATFORMS:
        return SimDeviceSpec(Family.PARTICLE_SERIAL, model)
    return None


def _bad(part: str, why: str) -> InputError:
    shown = part if len(part) <= 60 else part[:57] + "..."
    return InputError(
        f"--simulate: {why} in {shown!r}",
        hint="write KIND[:COUNT][!FAULT@N], comma-separated; kinds: " + ", ".join(valid_kinds()),
    )


def _parse_faults(part: str, text: str) -> tuple[Fault, ...]:
    faults: list[Fault] = []
    for item in text.split("!")[1:]:
        if not item or "," in item:
            raise _bad(part, "empty fault after '!'")
        try:
            parsed = parse_faults(item)
        except ValueError as exc:
            raise _bad(part, str(exc)) from None
        if len(parsed) != 1 or (parsed[0].at is not None and not 0 <= parsed[0].at < 1 << 31):
            raise _bad(part, f"bad fault {item!r}")
        faults.extend(parsed)
    return tuple(faults)


def parse_simulate_spec(text: str) -> list[SimDeviceSpec]:
    """``"photon-dfu:2,esp32:1"`` -> one ``SimDeviceSpec`` per board (counts expanded), in order.

    Anything else is an ``InputError`` naming the bad part and listing the valid kinds.
    """
    if len(text) > _MAX_SPEC_CHARS:
        raise _bad(text, f"spec longer than {_MAX_SPEC_CHARS} characters")
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise _bad(text, "no devices named")
    specs: list[SimDeviceSpec] = []
    for part in parts:
        if not part:
            raise _bad(text, "empty entry")
        match = _ENTRY.fullmatch(part.lower())
        if match is None:
            raise _bad(part, "not KIND[:COUNT][!FAULT]")
        kind = match.group("kind")
        known = _spec_for_kind(kind)
        if known is None:
            raise _bad(part, f"unknown kind {kind!r}")
        count = int(match.group("count")) if match.group("count") is not None else 1
        if not 1 <= count <= MAX_PER_ENTRY:
            raise _bad(part, f"count must be 1..{MAX_PER_ENTRY}")
        faults = _parse_faults(part, match.group("faults"))
        specs.extend(dataclasses.replace(known, faults=faults) for _ in range(count))
        if len(specs) > MAX_DEVICES:
            raise _bad(part, f"more than {MAX_DEVICES} devices")
    return specs


@dataclass(frozen=True)
class SimSlot:
    """A board on the simulated bench, as a test or a demo script sees it."""

    port_path: str
    spec: SimDeviceSpec
    device_id: str  # Particle: 24 hex digits; ESP: the MAC as 12 hex digits (as identify reports it)
    attached: bool


SimulatorObject = SimulatedDfuDevice | SimulatedSerialDevice | SimulatedEsp


@dataclass
class _Board:
    port_path: str
    spec: SimDeviceSpec
    sim: SimulatorObject
    attached: bool = True
    url: str | None = None  # ESP: socket:// URL

    @property
    def device_id(self) -> str:
        return self.sim.device_id


class SimulatedBench:
    """A ``Source`` of simulated boards; thread-safe: attach and detach while a line scans it.

    ``timing``: the simulators' timing model (on for demos and benchmarks, off in unit tests).
    ``rng``: draws device IDs and MACs (seed it for repeatable runs).
    ``dfu_options`` / ``serial_options`` / ``esp_options`` go to the station's device objects.
    """

    def __init__(
        self,
        *,
        timing: bool = True,
        rng: random.Random | None = None,
        dfu_options: Mapping[str, Any] | None = None,
        serial_options: Mapping[str, Any] | None = None,
        esp_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.timing = timing
        self._rng = rng if rng is not None else random.Random()
        self.backend = SimulatedUsbBackend()
        self._usb = UsbParticleSource(backend=self.backend, device_options=dfu_options, slot_name=self._dfu_slot)
        self._serial_options = dict(serial_options or {})
        self._esp_options = dict(esp_options or {})
        self._lock = threading.RLock()
        self._boards: dict[str, _Board] = {}
        self._next = 1
        self._closed = False

    # ---- plugging ---------------------------------------------------------------------------

    def attach(self, spec: SimDeviceSpec) -> str:
        """Plug in a new board made from ``spec``; returns its slot ("sim-N")."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the simulated bench is closed")
            port_path = f"sim-{self._next}"
            self._next += 1
            board = _Board(port_path, spec, self._make(spec, self._next - 1))
            self._boards[port_path] = board
            self._power(board)
            return port_path

    def attach_all(self, specs: Iterable[SimDeviceSpec]) -> list[str]:
        return [self.attach(spec) for spec in specs]

    def detach(self, port_path: str) -> None:
        """Unplug the board: it vanishes from scans and any open link to it fails at once."""
        with self._lock:
            board = self._board(port_path)
            if not board.attached:
                return
            board.attached = False
            sim = board.sim
        if isinstance(sim, SimulatedDfuDevice):
            self.backend.detach(sim)
        else:
            sim.stop()

    def reattach(self, port_path: str) -> str:
        """Plug a detached board back into its slot: the same board, powered up again.

        It keeps its identity, its flash or installed modules and the faults it has already
        suffered; a serial board comes back on a new pty, an ESP on a new TCP port.
        """
        with self._lock:
            board = self._board(port_path)
            if board.attached:
                return port_path
            board.attached = True
            self._power(board)
            return port_path

    def _make(self, spec: SimDeviceSpec, index: int) -> SimulatorObject:
        timing = TimingModel(enabled=self.timing)
        faults = FaultPlan(spec.faults)
        if spec.family is Family.PARTICLE_DFU:
            device_id = spec.device_id or self._rng.randbytes(12).hex()
            mode = "normal" if spec.normal_mode else "dfu"
            return SimulatedDfuDevice(
                spec.model, device_id, port_path=f"1-{index}", timing=timing, faults=faults, mode=mode
            )
        if spec.family is Family.PARTICLE_SERIAL:
            device_id = spec.device_id or self._rng.randbytes(12).hex()
            return SimulatedSerialDevice(spec.model, device_id, timing=timing, faults=faults)
        return SimulatedEsp(
            spec.model,
            spec.device_id,
            timing=timing,
            faults=faults,
            rng=self._rng,
            secure_download=spec.secure_download,
        )

    def _power(self, board: _Board) -> None:
        sim = board.sim
        if isinstance(sim, SimulatedDfuDevice):
            self.backend.attach(sim)
        elif isinstance(sim, SimulatedSerialDevice):
            sim.start()
        else:
            board.url = sim.serve_tcp()

    def _board(self, port_path: str) -> _Board:
        board = self._boards.get(port_path)
        if board is None:
            raise KeyError(f"no simulated board at {port_path!r}")
        return board

    # ---- Source -----------------------------------------------------------------------------

    def scan(self) -> list[Candidate]:
        with self._lock:
            boards = [b for b in self._boards.values() if b.attached]
        found: list[Candidate] = list(self._usb.scan())
        for board in boards:
            candidate: Candidate | None = None
            if isinstance(board.sim, SimulatedSerialDevice):
                candidate = self._serial_candidate(board, board.sim)
            elif isinstance(board.sim, SimulatedEsp) and board.url is not None:
                candidate = self._esp_candidate(board, board.url)
            if candidate is not None:
                found.append(candidate)
        return sorted(found, key=lambda c: _slot_number(c.slot))

    def _dfu_slot(self, usb_port_path: str) -> str | None:
        """The slot of the DFU board on this USB port of the simulated bus ("1-3" -> "sim-3")."""
        with self._lock:
            for board in self._boards.values():
                if isinstance(board.sim, SimulatedDfuDevice) and board.sim.port_path == usb_port_path:
                    return board.port_path if board.attached else None
        return None

    def _serial_candidate(self, board: _Board, sim: SimulatedSerialDevice) -> Candidate | None:
        # The board's normal-mode CDC ID, as the family table has it for its platform.
        usb_id = next(
            (
                u
                for u in serial_family.FAMILY.usb_ids
                if u.pid & 0xFF == sim.platform.platform_id and u.pid >> 8 == 0xC0
            ),
            None,
        )
        if usb_id is None:
            return None
        port = SeenPort(
            Bus.SERIAL,
            vid=usb_id.vid,
            pid=usb_id.pid,
            device=sim.port,
            usb_serial_number=sim.device_id.upper(),
            slot=board.port_path,
        )
        return self._claimed(serial_family.FAMILY.claims(port), serial_family.FAMILY.open, self._serial_options, sim)

    def _esp_candidate(self, board: _Board, url: str) -> Candidate | None:
        vid, pid, serial_number = _ESP_BRIDGE.vid, _ESP_BRIDGE.pid, None
        sim = board.sim
        if isinstance(sim, SimulatedEsp) and sim.chip.secure_download:
            # Its own USB-Serial/JTAG port, whose USB serial number is the MAC: the only way to tell
            # who an SDM board is (its ROM reads no eFuse).
            vid, pid, serial_number = _ESP_USB_JTAG.vid, _ESP_USB_JTAG.pid, sim.mac.upper()
        port = SeenPort(Bus.SERIAL, vid=vid, pid=pid, device=url, usb_serial_number=serial_number, slot=board.port_path)
        return self._claimed(esp_family.FAMILY.claims(port), esp_family.FAMILY.open, self._esp_options, None)

    @staticmethod
    def _claimed(
        description: DeviceDescription | None,
        open_family: Callable[[DeviceDescription, Mapping[str, Any]], Device],
        options: Mapping[str, Any],
        sim: SimulatedSerialDevice | None,
    ) -> Candidate | None:
        """The candidate the family makes of a simulated port it claimed (as discovery would)."""
        if description is None:
            return None
        claimed = description

        def open_board() -> Device:
            # A serial board's pty is read at open time: one that dropped off comes back on a new one.
            now = claimed if sim is None else dataclasses.replace(claimed, serial_port=sim.port)
            return open_family(now, options)

        return PeekableCandidate(claimed, open_board, open_board)

    def close(self) -> None:
        """Stop every pty and TCP server; the bench cannot be used afterwards. Safe to call twice."""
        with self._lock:
            self._closed = True
            boards = list(self._boards.values())
        for board in boards:
            if board.attached:
                self.detach(board.port_path)

    def __enter__(self) -> SimulatedBench:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- reading back -----------------------------------------------------------------------

    def slots(self) -> tuple[SimSlot, ...]:
        """Every board this bench has made, attached or not, in slot order."""
        with self._lock:
            boards = sorted(self._boards.values(), key=lambda b: _slot_number(b.port_path))
            return tuple(SimSlot(b.port_path, b.spec, b.device_id, b.attached) for b in boards)

    def simulator(self, port_path: str) -> SimulatorObject:
        """The simulator object behind a slot, for anything the helpers below do not cover."""
        with self._lock:
            return self._board(port_path).sim

    def device_id(self, port_path: str) -> str:
        return self.simulator(port_path).device_id

    def read_flash(self, port_path: str, address: int, length: int) -> bytes:
        """Bytes a DFU or ESP board's flash holds (what a logic analyser on the flash would read)."""
        sim = self.simulator(port_path)
        if isinstance(sim, SimulatedDfuDevice):
            alt = next((i for i, m in enumerate(sim.memory) if m.covers(address, length)), 0)
            return sim.read(address, length, alt=alt)
        if isinstance(sim, SimulatedEsp):
            return sim.read_flash(address, length)
        raise TypeError(f"{port_path} is a serial board: its flash cannot be read, see installed()")

    def installed(self, port_path: str, function: int, index: int) -> bytes | None:
        """A serial board's module installed over YModem in that slot (None: none was)."""
        sim = self.simulator(port_path)
        if not isinstance(sim, SimulatedSerialDevice):
            raise TypeError(f"{port_path} is not a serial board")
        return sim.installed(function, index)

    def holds(self, port_path: str, image: FlashImage) -> bool:
        """Whether the board holds ``image`` byte for byte where it belongs."""
        sim = self.simulator(port_path)
        if isinstance(sim, SimulatedSerialDevice):
            function, index = image.module_function, image.module_index
            if function is None or index is None:
                try:
                    module = parse_module(image.data)
                except FirmwareError:
                    return False
                function, index = int(module.prefix.function), int(module.prefix.index)
            return sim.installed(function, index) == image.data
        try:
            return self.read_flash(port_path, image.address, image.size) == image.data
        except ValueError:
            return False

    def running(self, port_path: str) -> str | None:
        """What the board runs now, in the simulator's words (None: nothing reported yet)."""
        sim = self.simulator(port_path)
        if isinstance(sim, SimulatedDfuDevice):
            report = sim.running
            return None if report is None else report.mode.value
        if isinstance(sim, SimulatedSerialDevice):
            return sim.mode.value
        return f"application (started {sim.app_started} times)" if sim.app_started else None


def _slot_number(port_path: str) -> int:
    _, _, number = port_path.rpartition("-")
    return int(number) if number.isdigit() else 0


def bench_from_spec(
    text: str,
    *,
    timing: bool = True,
    rng: random.Random | None = None,
    esp_options: Mapping[str, Any] | None = None,
) -> SimulatedBench:
    """A bench with every board of ``text`` attached (parse errors are InputError, nothing started)."""
    specs = parse_simulate_spec(text)
    bench = SimulatedBench(timing=timing, rng=rng, esp_options=esp_options)
    try:
        bench.attach_all(specs)
    except BaseException:
        bench.close()
        raise
    return bench


__all__: Sequence[str] = (
    "SimDeviceSpec",
    "SimSlot",
    "SimulatedBench",
    "bench_from_spec",
    "parse_simulate_spec",
    "valid_kinds",
)
