"""``station run``: the technician's all-shift command — dashboard on a terminal, JSON events otherwise."""

from __future__ import annotations

import getpass
import queue
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from station.errors import InputError

if TYPE_CHECKING:
    from station.discovery.base import Source
    from station.line.events import Event, EventSink
    from station.line_setup import PreparedLine
    from station.session import LineSession
    from station.store import Registry
    from station.store.trace import Actor


def resolve_operator(option: str | None, from_profile: str | None) -> str:
    """--operator, else the profile's, else asked on a terminal, else the login name."""
    name = option or from_profile
    if not name and sys.stdin.isatty():
        name = click.prompt("Operator", default=getpass.getuser())
    name = (name or getpass.getuser()).strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise InputError(f"operator name {name!r} must be 1-64 printable characters", hint="pass --operator NAME")
    return name


@contextmanager
def first_interrupt_stops(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C once: stop taking boards and let running jobs finish. Twice: abort now (exit 130)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("station: stopping: running jobs finish first (Ctrl-C again to abort them)", err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@click.command()
@click.option("--profile", "profile_path", required=True, type=click.Path(dir_okay=False), help="Line profile (TOML).")
@click.option("--db", "db_option", help="Registry file (default: BENCHFLASH_DB or the data folder).")
@click.option("--operator", help="Who runs the bench; recorded with every attempt.")
@click.option("--json", "as_json", is_flag=True, help="JSON events on stdout (the default when not a terminal).")
@click.option("--simulate", "simulate", metavar="SPEC", help="Attach simulated devices, e.g. argon-dfu:2,esp32:1.")
@click.option("--no-timing", is_flag=True, help="With --simulate: simulators without modelled link and flash time.")
@click.option(
    "--duration", type=click.FloatRange(min=0.1), help="Stop taking boards after this many seconds (scripted runs)."
)
@click.option(
    "--pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the operator's PIN (mode 0600); else $BENCHFLASH_PIN, else a prompt.",
)
@click.option(
    "--allow-downgrade",
    is_flag=True,
    help="A lead allows this run's bundle to be older than what the station flashed (audited; one run).",
)
def run(
    profile_path: str,
    db_option: str | None,
    operator: str | None,
    as_json: bool,
    simulate: str | None,
    no_timing: bool,
    duration: float | None,
    pin_file: Path | None,
    allow_downgrade: bool,
) -> None:
    """Flash, verify and record every board plugged into the bench until stopped.

    On a station with operators (`station operators add`), the operator signs in with a name and
    PIN. The bundle is refused before anything is written when it is older than what the station
    has flashed (or the profile's min_version), unless a lead passes --allow-downgrade; the audit
    log records the run's start and stop, and its head is signed with the station key at the end.
    """
    from station.cli.line_sources import open_sources
    from station.line_setup import prepare_line
    from station.profile import load_profile
    from station.store import Registry, resolve_db_path
    from station.trace.release_floor import check_release
    from station.trace.roles import Right
    from station.trace.run_audit import RunSetup, begin_run, end_run
    from station.trace.signin import sign_in_for

    profile = load_profile(profile_path)
    name = resolve_operator(operator, profile.operator)
    line = prepare_line(profile, operator=name)
    registry = Registry(resolve_db_path(db_option))
    try:
        actor = sign_in_for(registry, name, Right.RUN, station_id=profile.station_id, pin_file=pin_file)
        m = line.bundle.manifest
        decision = check_release(
            registry,
            m,
            min_version=profile.min_version,
            station_id=profile.station_id,
            allow_downgrade=actor if allow_downgrade else None,
        )
        setup = RunSetup(
            str(profile.path.resolve()),
            profile.bundle.name,
            line.bundle_sha256,
            m.product.id,
            m.product_version,
            m.security_version,
        )
        begin_run(registry, actor, setup, decision)
    except BaseException:
        registry.close()
        raise
    # An ESP line's profile naming its slots is the explicit list: those ports are probed as ESP boards
    # even behind a bridge the family table does not know (never a vendor ID alone).
    esp_slots = tuple(profile.slot_labels) if line.plan.target.is_esp else ()
    sources = open_sources(simulate, timing=not no_timing, esp_slots=esp_slots, esp_options=line.esp_options())
    use_dashboard = not as_json and sys.stdout.isatty()
    session: list[LineSession] = []
    try:
        if use_dashboard:
            _run_dashboard(line, registry, sources, duration, actor, session)
        else:
            _run_json(line, registry, sources, duration, actor, session)
    finally:
        for source in sources:
            source.close()
        try:
            runner = session[0].runner if session else None
            end_run(
                registry,
                actor,
                passed=runner.passed if runner else 0,
                failed=runner.failed if runner else 0,
                key_path=profile.station_key,
            )
        finally:
            registry.close()


def _session(
    line: PreparedLine,
    registry: Registry,
    sources: Sequence[Source],
    sink: EventSink,
    actor: Actor,
    made: list[LineSession],
) -> LineSession:
    from station.session import LineSession

    session = LineSession(line, registry, sources, sink, actor=actor)
    made.append(session)
    if line.cloud is not None:
        from station.cloud.errors import CloudConfigError
        from station.cloud.token import load_token

        try:
            token = load_token(line.cloud)
        except CloudConfigError as exc:
            click.echo(f"station: cloud sync off: {exc}; passed boards stay queued for `station sync`", err=True)
        else:
            session.start_sync(token)
    return session


def _stop_after(stop: threading.Event, duration: float | None) -> None:
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()


def _run_json(
    line: PreparedLine,
    registry: Registry,
    sources: Sequence[Source],
    duration: float | None,
    actor: Actor,
    made: list[LineSession],
) -> None:
    from station.ui.jsonl import JsonLinesSink

    stop = threading.Event()
    sink = JsonLinesSink(sys.stdout)
    session = _session(line, registry, sources, sink, actor, made)
    if session.runner.scan_desk is not None:
        from station.cli.scan_input import feed_scans

        reader = threading.Thread(
            target=feed_scans, args=(sys.stdin, session.runner, sink, stop), name="scans", daemon=True
        )
        reader.start()
    _stop_after(stop, duration)
    with first_interrupt_stops(stop):
        session.run(stop)


def _run_dashboard(
    line: PreparedLine,
    registry: Registry,
    sources: Sequence[Source],
    duration: float | None,
    actor: Actor,
    made: list[LineSession],
) -> None:
    from station.ui.dashboard import Dashboard, DashboardInfo

    m = line.bundle.manifest
    stop = threading.Event()
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    session = _session(line, registry, sources, events.put, actor, made)
    worker = threading.Thread(target=session.run, args=(stop,), name="line", daemon=True)
    app = Dashboard(
        DashboardInfo(
            product=m.product.describe(),
            version=str(m.product_version),
            bundle=line.profile.bundle.name,
            station_id=line.plan.station_id,
            operator=line.plan.operator,
        ),
        retry=session.retry,
        request_stop=stop.set,
        submit_scan=session.runner.submit_scan if session.runner.scan_desk is not None else None,
        is_idle=lambda: not worker.is_alive(),
        events=events,
    )
    worker.start()
    _stop_after(stop, duration)
    app.run()
    # The app only exits by itself once the line is idle; any other exit (a crash) still drains.
    stop.set()
    worker.join()
