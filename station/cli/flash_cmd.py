"""``station flash FILE``: put one module, ESP image or release bundle on one attached device, then verify.

For a developer at a desk, like ``particle flash --usb``: it picks the device named by ``--device ID``
or ``--port PORT``, or the only device that can take the file; with several candidates and none
named it refuses to guess. Bundles are verified against ``--trusted`` keys before anything else.
The device's platform or chip is checked against the file before a byte is written. Progress goes
to stderr, the result to stdout (``--json``: one object). Exit 0 flashed and verified, 1 a device or
check failed, 2 unusable input or usage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click

from firmware_tools.bundle.images import ImageFacts, describe_esp, describe_particle
from firmware_tools.bundle.manifest import PARTICLE_KIND_BY_FUNCTION
from firmware_tools.checks import Expectations
from firmware_tools.errors import FirmwareError
from firmware_tools.formats import read_firmware
from station.cli.devices_cmd import error_json, identify_candidate, open_sources, source_problems
from station.devices.base import (
    Device,
    DeviceDescription,
    DeviceIdentity,
    Family,
    FlashImage,
    Phase,
    Progress,
    VerifyNote,
)
from station.devices.esp_placement import EspPlacement, judge_on_board, place_esp_image
from station.devices.families import families_taking, family_of
from station.devices.family import Bus, FirmwareKind, Target
from station.discovery.base import Candidate, Source, scan_all
from station.errors import DeviceError, InputError, Reason, StationError, WrongTarget
from station.line.events import Event, ProgressEvent
from station.line.job import JobContext, run_job
from station.line.plan import JobPlan, flash_images, target_of
from station.profile import LineMode, VerifyPolicy
from station.store.models import AttemptResult, RunContext, Slot
from station.store.unit_serials import SerialSource

_FUNCTION_BY_KIND = {kind: code for code, kind in PARTICLE_KIND_BY_FUNCTION.items()}
_ZIP_MAGIC = b"PK\x03\x04"
_ESP_MAGIC = 0xE9
# Where an ESP app goes when neither --address nor the file says (ESP-IDF's default factory app offset).
DEFAULT_ESP_APP_ADDRESS = 0x10000
DEFAULT_ESP_PARTITION_TABLE_ADDRESS = 0x8000
# Which families take which firmware: the family table's word, not a copy of it.
_PARTICLE_FAMILIES = families_taking(FirmwareKind.PARTICLE)
_ESP_FAMILIES = families_taking(FirmwareKind.ESP)


# ---- what to flash --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlashInput:
    """The images of FILE, in flash order, and the device they are for."""

    source: str
    what: str  # "particle-module", "esp-image", "bundle"
    families: frozenset[Family]
    target: Target | None  # None: any device of ``families`` (an ESP partition table alone)
    images: tuple[FlashImage, ...]
    product: str | None = None  # bundles: "name v3 (id 4242)"
    # A single ESP image: where it goes, judged again on the board when the board's table decides.
    esp_placement: EspPlacement | None = None

    @property
    def label(self) -> str:
        """The file as a person would name it: "a Particle module", "an ESP image", "a release bundle"."""
        return _LABELS[self.what]

    @property
    def job_target(self) -> Target:
        """The target the job checks every board against (its family's ``accepts``)."""
        if self.target is not None:
            return dataclasses.replace(self.target, source=self.source)
        return Target(esp=True, source=self.source)  # an ESP partition table alone: any ESP chip

    def refusal(self, family: Family, identity: DeviceIdentity) -> str | None:
        """Why this device must not take these images, or None."""
        if family not in self.families:
            return f"the device is {identity.platform} ({family.value}): it cannot take {self.label}"
        return self.job_target.mismatch(family, identity)


_LABELS = {"particle-module": "a Particle module", "esp-image": "an ESP image", "bundle": "this bundle"}


def _failed_checks(facts: ImageFacts, name: str) -> None:
    failed = facts.failed
    if failed:
        listed = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        raise InputError(f"{name} fails its own checks: {listed}", hint="rebuild or re-download the file")


def _particle_input(name: str, data: bytes, address: int | None) -> FlashInput:
    facts = describe_particle(data, name=name, expect=Expectations())
    _failed_checks(facts, name)
    if address is not None and address != facts.address:
        raise InputError(
            f"--address {address:#x}: {name} is a Particle module that starts at {facts.address:#x}",
            hint="leave out --address: a module carries its own address",
        )
    p = facts.particle
    assert p is not None and facts.target is not None
    image = FlashImage(
        name=Path(name).name,
        data=data,
        address=facts.address,
        kind=facts.kind.value,
        module_function=_FUNCTION_BY_KIND[p.module_function],
        module_index=p.module_index,
        platform_id=p.platform_id,
    )
    target = Target(platform_id=p.platform_id, platform_name=facts.target.platform_name)
    return FlashInput(name, "particle-module", _PARTICLE_FAMILIES, target, (image,))


def _esp_input(
    name: str, data: bytes, address: int | None, base_address: int | None, *, raw: bool, table_file: str | None
) -> FlashInput:
    placement = place_esp_image(name, data, address=address, base_address=base_address, raw=raw, table_file=table_file)
    if not raw:
        _failed_checks(describe_esp(data, name=name, address=placement.image.address, expect=Expectations()), name)
    chip = placement.piece.chip
    target = Target(chip=chip) if chip is not None else None
    return FlashInput(name, "esp-image", _ESP_FAMILIES, target, (placement.image,), esp_placement=placement)


def _bundle_input(path: str, trusted: Sequence[str]) -> FlashInput:
    from firmware_tools.bundle import open_verified_bundle

    if not trusted:
        raise InputError(
            f"{path} is a release bundle: it is verified before flashing",
            hint="give the signer's public key with --trusted KEY.pub",
        )
    bundle = open_verified_bundle(path, [Path(k) for k in trusted])
    m = bundle.manifest
    images = flash_images(bundle)
    target = target_of(bundle)
    families = _ESP_FAMILIES if target.is_esp else _PARTICLE_FAMILIES
    product = f"product {m.product.describe()} v{m.product_version}"
    return FlashInput(path, "bundle", families, target, images, product)


def load_flash_input(
    path: str,
    *,
    address: int | None,
    trusted: Sequence[str],
    raw: bool = False,
    partition_table: str | None = None,
) -> FlashInput:
    """What FILE holds, by content: a release bundle, a Particle module, or an ESP image (.bin or Intel HEX)."""
    from firmware_tools.fileio import read_regular_file

    head = read_regular_file(path, 3, what="firmware file or bundle")[:4]
    if head == _ZIP_MAGIC and not raw:
        if address is not None:
            raise InputError("--address does not apply to a bundle: its manifest says where each image goes")
        return _bundle_input(path, trusted)
    firmware = read_firmware(path)
    data = firmware.data
    from firmware_tools.bundle.partition_table import looks_like_partition_table

    if raw or partition_table is not None or data[:1] == bytes([_ESP_MAGIC]) or looks_like_partition_table(data):
        return _esp_input(path, data, address, firmware.base_address, raw=raw, table_file=partition_table)
    return _particle_input(path, data, address)


# ---- which device ---------------------------------------------------------------------------------


def _same_id(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return text.lower().replace(":", "").replace("-", "")

    return norm(a) == norm(b)


def _describe(candidates: Sequence[Candidate]) -> str:
    return ", ".join(f"{c.slot} ({c.description.family.value})" for c in candidates)


def explicit_port_candidate(port: str, flash_input: FlashInput) -> Candidate | None:
    """A serial port the scan does not list, taken at the user's word: a ``socket://`` or
    ``rfc2217://`` URL (``station sim esp``, a remote bridge) or a tty such as a ``station sim
    particle-serial`` link or an adapter whose USB IDs are not known. The file says which family
    to speak: a Particle module goes over listening mode, an ESP image to the ROM loader."""
    url = port.startswith(("socket://", "rfc2217://"))
    if not url and not (os.path.exists(port) and stat.S_ISCHR(os.stat(port).st_mode)):
        return None
    # The first serial family that takes this file; a Particle link is never a socket URL.
    serial_families = [f for f in (family_of(k) for k in sorted(flash_input.families)) if f.bus is Bus.SERIAL]
    family = next((f for f in serial_families if not url or f.key is Family.ESP), None)
    if family is None:
        return None
    # Taken at the user's word: no USB IDs are known for the port; it is in the mode of the family's ports.
    description = DeviceDescription(family=family.key, port_path=port, mode=family.usb_ids[0].mode, serial_port=port)
    # An ESP file names its chip: esptool connects as that chip instead of detecting it.
    chip = flash_input.target.chip if flash_input.target is not None else None
    options = {"chip": chip} if family.key is Family.ESP and chip else {}
    return Candidate(description, lambda: family.open(description, options))


def choose_device(
    sources: Sequence[Source], flash_input: FlashInput, *, device_id: str | None, port: str | None
) -> Candidate:
    """The one candidate to flash; InputError when ambiguous, DeviceError NOT_FOUND when absent."""
    everything = sorted(scan_all(sources).values(), key=lambda c: c.slot)
    problems = source_problems(sources)
    absent_hint = (
        "; ".join(p.one_line() for p in problems) or "is it plugged in, and in DFU, listening or download mode?"
    )
    if port is not None:
        named = [c for c in everything if port in (c.slot, c.description.serial_port)]
        if named:
            return named[0]
        direct = explicit_port_candidate(port, flash_input)
        if direct is not None:
            return direct
        seen = _describe(everything) or "none"
        raise DeviceError(f"no device at port {port!r} (attached: {seen})", reason=Reason.NOT_FOUND, hint=absent_hint)
    if device_id is not None:
        errors: list[str] = []
        for candidate in everything:
            listed = identify_candidate(candidate)
            if listed.identity is not None and _same_id(listed.identity.device_id, device_id):
                return candidate
            if listed.identity is not None and listed.identity.mac and _same_id(listed.identity.mac, device_id):
                return candidate
            if listed.error is not None:
                errors.append(listed.error.one_line())
        detail = f"; could not identify: {'; '.join(errors)}" if errors else ""
        raise DeviceError(f"no attached device has ID {device_id}{detail}", reason=Reason.NOT_FOUND, hint=absent_hint)
    fitting = [c for c in everything if c.description.family in flash_input.families]
    if not fitting:
        others = f" (attached: {_describe(everything)})" if everything else ""
        raise DeviceError(
            f"no device that can take {flash_input.label} is attached{others}",
            reason=Reason.NOT_FOUND,
            hint=absent_hint,
        )
    if len(fitting) > 1:
        raise InputError(
            f"{len(fitting)} devices could take {flash_input.source}: {_describe(fitting)}; not guessing",
            hint="name one with --device ID or --port PORT (station devices lists them)",
        )
    return fitting[0]


# ---- flashing -------------------------------------------------------------------------------------


class ProgressPrinter:
    """A stderr line per progress event the job lets through (the line's own throttle: every phase
    and image change, the end of each, and at most ``PROGRESS_EVENTS_PER_SECOND`` in between): text,
    or with ``as_json`` one JSON object per line (``{"event": "progress", "slot", "phase", "image",
    "done", "total"}``). A line identical to the one before is not repeated."""

    def __init__(self, slot: str, echo: Callable[[str], None], *, as_json: bool = False) -> None:
        self.slot = slot
        self.echo = echo
        self.as_json = as_json
        self._last: str | None = None

    def __call__(self, p: Progress) -> None:
        if self.as_json:
            fields = {"phase": p.phase.value, "image": p.image, "done": p.done, "total": p.total}
            line = json.dumps({"event": "progress", "slot": self.slot, **fields})
        else:
            percent = 100 if p.total <= 0 else min(100, p.done * 100 // p.total)
            what = f" {p.image}" if p.image else ""
            line = f"{self.slot}: {p.phase.value}{what} {percent}%"
        if line != self._last:
            self._last = line
            self.echo(line)


@dataclass(frozen=True)
class FlashOutcome:
    description: DeviceDescription
    identity: DeviceIdentity | None
    running: str | None
    seconds: float
    error: StationError | None
    layout: str | None = None  # ESP: what decided where the image went
    verify_note: VerifyNote | None = None  # how verify checked the images, when not by itself

    @property
    def passed(self) -> bool:
        return self.error is None


class _Unrecorded:
    """`station flash` keeps no registry: the job's transitions go nowhere."""

    def start_attempt(self, slot: Slot, context: RunContext) -> int:
        return 0

    def record_phase(self, attempt_id: int, phase: str) -> None:
        return None

    def identify(self, attempt_id: int, device_id: str, platform: str) -> str:
        return device_id

    def finish_attempt(
        self,
        attempt_id: int,
        result: AttemptResult | str,
        error_code: str | None = None,
        error_message: str | None = None,
        *,
        enqueue_product: str | None = None,
        group: str | None = None,
    ) -> None:
        return None

    def reserve_unit_serial(self, attempt_id: int, source: SerialSource) -> str:
        # The plan station flash builds has no [unit_data]; a serial needs a registry to reserve it in.
        raise InputError("station flash keeps no registry, so it cannot hand out [unit_data] serial numbers")

    def record_unit_data(self, attempt_id: int, unit_data: str) -> None:
        return None


def flash_candidate(
    candidate: Candidate,
    flash_input: FlashInput,
    progress: Callable[[Progress], None],
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> FlashOutcome:
    """The line's job on one device (line/job.py ``run_job``): identify -> refuse a device of another
    kind -> flash -> verify -> restart -> confirm it runs them. ``progress`` sees what the job's
    progress throttle lets through."""
    plan = JobPlan(
        station_id="station-flash",
        target=flash_input.job_target,
        images=flash_input.images,
        mode=LineMode.FLASH,
        verify=VerifyPolicy.ALWAYS,
        confirm_version=True,
    )

    def emit(event: Event) -> None:
        if isinstance(event, ProgressEvent):
            progress(Progress(Phase(event.phase), event.done, event.total, event.image))

    ctx = JobContext(slot=candidate.slot, label=candidate.slot, emit=emit, monotonic=monotonic)
    layout: list[str] = []
    placement = flash_input.esp_placement
    if placement is not None:

        def place(device: Device, identity: DeviceIdentity) -> tuple[FlashImage, ...]:
            placed = _placement_on_board(placement, device, identity)
            layout.append(placed.note())
            return (placed.image,)

        ctx.place_images = place
    result = run_job(candidate.open, candidate.description, plan, _Unrecorded(), ctx)
    assert result is not None  # no runner here to abandon the job
    error = result.error
    if not result.passed and error is None:
        error = StationError(result.message, reason=result.reason or Reason.INTERNAL)
    return FlashOutcome(
        candidate.description,
        result.identity,
        result.firmware,
        result.seconds,
        error,
        layout[0] if layout else None,
        ctx.verify_note,
    )


def _placement_on_board(placement: EspPlacement, device: Device, identity: DeviceIdentity) -> EspPlacement:
    """The layout rules once the board is known: its chip, and its partition table when none was given."""
    read_flash = getattr(device, "read_flash", None)
    if read_flash is None:
        raise WrongTarget("this device cannot take an ESP image", device=identity.device_id)
    return judge_on_board(placement, chip=identity.platform, read_flash=read_flash, device=identity.device_id)


def outcome_json(outcome: FlashOutcome, flash_input: FlashInput) -> dict[str, object]:
    d, i = outcome.description, outcome.identity
    return {
        "result": "pass" if outcome.passed else "fail",
        "file": flash_input.source,
        "kind": flash_input.what,
        "product": flash_input.product,
        "device": {
            "port_path": d.port_path,
            "family": d.family.value,
            "mode": d.mode.value,
            "serial_port": d.serial_port,
            "device_id": None if i is None else i.device_id,
            "platform": None if i is None else i.platform,
            "platform_id": None if i is None else i.platform_id,
            "mac": None if i is None else i.mac,
        },
        "images": [
            {"name": m.name, "kind": m.kind, "address": m.address, "size": m.size, "sha256": m.sha256}
            for m in flash_input.images
        ],
        "layout": outcome.layout,
        "verified": outcome.passed and (outcome.verify_note is None or outcome.verify_note.verified),
        "verify_note": None if outcome.verify_note is None else outcome.verify_note.text,
        "running": outcome.running,
        "seconds": round(outcome.seconds, 3),
        "error": None if outcome.error is None else error_json(outcome.error),
    }


def _refuse(
    ctx: click.Context, file: str, as_json: bool, message: str, reason: Reason, code: int, hint: str | None
) -> NoReturn:
    """End before anything was written: one line on stderr, and the result object under ``--json``."""
    if as_json:
        error = {"reason": reason.value, "message": message, "hint": hint}
        click.echo(json.dumps({"result": "fail", "file": file, "device": None, "error": error}, indent=2))
    click.echo(f"{ctx.find_root().info_name}: error: {message}", err=True)
    ctx.exit(code)


def _parse_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        address = int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (e.g. 0x10000)") from None
    if not 0 <= address < 1 << 32:
        raise click.BadParameter(f"{value} is outside the 32-bit address space")
    return address


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--device", "device_id", metavar="ID", help="The device ID (Particle) or MAC (ESP) to flash.")
@click.option("--port", metavar="PORT", help="The port to flash: a USB port path (1-1.4) or a serial port.")
@click.option("--address", metavar="ADDR", callback=_parse_address, help="Flash address of a raw ESP image.")
@click.option("--raw", is_flag=True, help="FILE is data, no ESP header: write it to the data partition at --address.")
@click.option(
    "--partition-table",
    "partition_table",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The partition table the ESP board has (else it is read back from 0x8000); not written.",
)
@click.option(
    "--trusted",
    "trusted",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="KEY.pub",
    help="Public key a bundle must be signed with (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--simulate", metavar="SPEC", help="Flash a simulated device instead, e.g. argon-dfu:1.")
@click.option("--sim-timing/--no-sim-timing", default=True, envvar="BENCHFLASH_SIM_TIMING", hidden=True)
@click.pass_context
def flash(
    ctx: click.Context,
    file: str,
    device_id: str | None,
    port: str | None,
    address: int | None,
    raw: bool,
    partition_table: str | None,
    trusted: tuple[str, ...],
    as_json: bool,
    simulate: str | None,
    sim_timing: bool,
) -> None:
    """Flash FILE (a Particle module, an ESP image or a release bundle) onto one device, then verify it."""
    if device_id is not None and port is not None:
        raise click.UsageError("give --device or --port, not both")
    try:
        flash_input = load_flash_input(file, address=address, trusted=trusted, raw=raw, partition_table=partition_table)
    except FirmwareError as exc:
        # A bundle that fails verification is a failed check (1); anything else unusable input (2).
        _refuse(ctx, file, as_json, str(exc), Reason.BAD_INPUT, exc.exit_code, exc.hint)
    except StationError as exc:
        _refuse(ctx, file, as_json, exc.one_line(), exc.reason, exc.exit_code, None)
    chip = flash_input.target.chip if flash_input.target is not None else None
    sources, to_close = open_sources(ctx, simulate, sim_timing=sim_timing, esp_options={"chip": chip} if chip else None)
    try:
        try:
            candidate = choose_device(sources, flash_input, device_id=device_id, port=port)
        except StationError as exc:
            _refuse(ctx, file, as_json, exc.one_line(), exc.reason, exc.exit_code, None)
        echo: Callable[[str], None] = lambda line: click.echo(line, err=True)  # noqa: E731
        count = len(flash_input.images)
        if not as_json:
            echo(f"{candidate.slot}: flashing {flash_input.source} ({count} image{'s' if count != 1 else ''})")
        printer = ProgressPrinter(candidate.slot, echo, as_json=as_json)
        if candidate.description.family is Family.ESP:
            from station.devices.esptool_adapter import precompress

            precompress([image.data for image in flash_input.images])  # while the board connects
        outcome = flash_candidate(candidate, flash_input, printer)
    finally:
        for source in to_close:
            source.close()
    if as_json:
        click.echo(json.dumps(outcome_json(outcome, flash_input), indent=2))
    if outcome.error is not None:
        if not as_json:
            click.echo(f"FAIL {candidate.slot}: {outcome.error.one_line()}", err=True)
        ctx.exit(outcome.error.exit_code)
    if not as_json:
        i = outcome.identity
        assert i is not None
        runs = f"; runs {outcome.running}" if outcome.running else ""
        if outcome.layout:
            runs += f"; {outcome.layout}"
        total = sum(m.size for m in flash_input.images)
        note = outcome.verify_note
        checked = "and verified " if note is None or note.verified else ""
        unchecked = f" ({note.text})" if note is not None and not note.verified else ""
        click.echo(
            f"PASS {candidate.slot} {i.platform} {i.device_id}: wrote {checked}{total} bytes"
            f" in {outcome.seconds:.1f} s{runs}{unchecked}"
        )
