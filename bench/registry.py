# ruff: noqa: E402
"""Registry speed (issue 7 item 4): durable attempts per second with a commit per transition, and
``station stats`` / ``station export`` over a registry of 1,000,000 recorded devices.

The first figure is compared with the disk's own limit measured in the same run: each transition is
one WAL commit with ``synchronous=FULL``, i.e. one fsync, so attempts/s can at best reach
fsyncs/s divided by the commits per attempt. Report times are compared with the same SQL run bare
on a plain connection (stats: the reads of the running totals it makes; export: reading the IDs),
and all-time stats with the full scan it replaced (the running totals of ``station.store.summary``).
The work happens in a temporary folder beside the default registry (same disk as a real station)
unless ``--dir`` says otherwise; it is removed afterwards.

Run with `make bench` or `.venv/bin/python bench/registry.py [--devices N] [--seconds S] [--dir D]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts this script's folder first on the import path, where bench/inspect.py would shadow
# the standard library's inspect (which dataclasses needs); look for modules elsewhere.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from station.store import Registry, RunContext, Slot
from station.store.export import ExportFormat, render
from station.store.models import ImageDigest
from station.store.paths import default_db_path

STATION = Path(sys.executable).with_name("station")
PHASES = ("identify", "erase", "write", "verify", "restart")
COMMITS_PER_ATTEMPT = 1 + 1 + len(PHASES) + 1  # start, identify, each phase, finish
CONTEXT = RunContext(
    "bench-1",
    "bench",
    "acme-v3",
    "ab" * 32,
    1234,
    3,
    (ImageDigest("system-part1", "11" * 32), ImageDigest("user-part", "22" * 32)),
)
LINE_SLOTS, LINE_SECONDS_PER_DEVICE = 32, 10.0  # a fast line: 32 slots, a device per slot every 10 s
LINE_NEED = LINE_SLOTS / LINE_SECONDS_PER_DEVICE  # attempts per second
REASONS = ("verify-mismatch", "timeout", "disconnected", "wrong-target", "device-status")


def syncs_per_second(folder: Path, seconds: float) -> float:
    """The disk's limit for a WAL commit: a page or two rewritten in a file that already exists
    (SQLite reuses its WAL), then ``fdatasync``, as SQLite does on Linux with ``synchronous=FULL``."""
    path = folder / "sync.probe"
    block = b"x" * 8192
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, block * 512)
        os.fsync(fd)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.pwrite(fd, block, (count % 512) * len(block))
            os.fdatasync(fd)
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def durable_attempts(folder: Path, threads: int, seconds: float) -> tuple[float, int]:
    """Attempts per second through the line's API from ``threads`` workers, and the total recorded."""
    path = folder / f"line-{threads}.db"
    registry = Registry(path)
    stop = time.perf_counter() + seconds
    done = [0] * threads

    def worker(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            attempt = registry.start_attempt(Slot(f"1-1.{n}", f"S{n}"), CONTEXT)
            registry.record_phase(attempt, PHASES[0])
            registry.identify(attempt, f"{rng.getrandbits(96):024x}", "argon")
            for phase in PHASES[1:]:
                registry.record_phase(attempt, phase)
            if rng.random() < 0.05:
                registry.finish_attempt(attempt, "fail", rng.choice(REASONS), "bench failure")
            else:
                registry.finish_attempt(attempt, "pass", enqueue_product="1234")
            done[n] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    registry.close()
    return sum(done) / elapsed, sum(done)


Attempt = tuple[str, float, float, str | None]  # result, started, ended, error code


def _fill_rows(devices: int, seed: int) -> Iterator[tuple[str, list[Attempt]]]:
    """Per device: its ID and its attempts (result, start, end, code): 95 % pass first time,
    3 % fail then pass, 2 % only fail; one device every 6 s on average, as a 16-slot line."""
    rng = random.Random(seed)
    t = 1_780_000_000.0
    for _ in range(devices):
        device = f"{rng.getrandbits(96):024x}"
        t += rng.uniform(3.0, 9.0)
        roll = rng.random()
        if roll < 0.95:
            attempts: list[Attempt] = [("pass", t, t + 40.0, None)]
        elif roll < 0.98:
            attempts = [("fail", t, t + 25.0, rng.choice(REASONS)), ("pass", t + 60.0, t + 100.0, None)]
        else:
            attempts = [("fail", t, t + 25.0, rng.choice(REASONS))]
        yield device, attempts


def build_registry(path: Path, devices: int) -> tuple[int, float]:
    """A registry of ``devices`` devices, written in bulk through SQL (the line's API would take hours)."""
    Registry(path).close()  # schema at the latest version
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO sessions VALUES ('bulk', 0, 'bench', 0, 1)")
    attempt_id = 0
    device_rows: list[tuple[object, ...]] = []
    attempt_rows: list[tuple[object, ...]] = []
    image_rows: list[tuple[object, ...]] = []
    phase_rows: list[tuple[object, ...]] = []
    outbox_rows: list[tuple[object, ...]] = []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO devices (device_id, platform, first_seen, last_seen, last_result,"
            " last_attempt_id, attempts, first_result, first_result_at, passed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            device_rows,
        )
        conn.executemany(
            "INSERT INTO attempts (id, session_id, device_id, platform, slot_port, slot_label,"
            " station_id, operator, bundle_id, bundle_sha256, product_id, product_version,"
            " started_at, ended_at, phase, result, error_code, error_message)"
            " VALUES (?, 'bulk', ?, 'argon', ?, ?, ?, 'bench', 'acme-v3', ?, 1234, 3, ?, ?, ?, ?, ?, ?)",
            attempt_rows,
        )
        conn.executemany("INSERT INTO attempt_images VALUES (?, ?, ?, ?)", image_rows)
        conn.executemany("INSERT INTO attempt_phases VALUES (?, ?, ?, ?, ?)", phase_rows)
        conn.executemany(
            "INSERT INTO outbox (product, device_id, state, enqueued_at, updated_at)"
            " VALUES ('1234', ?, 'synced', ?, ?)",
            outbox_rows,
        )
        for rows in (device_rows, attempt_rows, image_rows, phase_rows, outbox_rows):
            rows.clear()

    for device, attempts in _fill_rows(devices, seed=7):
        passed_at = None
        for result, started, ended, code in attempts:
            attempt_id += 1
            slot = attempt_id % 16
            attempt_rows.append(
                (
                    attempt_id,
                    device,
                    f"1-1.{slot}",
                    f"S{slot}",
                    f"bench-{attempt_id % 3}",
                    "ab" * 32,
                    started,
                    ended,
                    "restart" if result == "pass" else "write",
                    result,
                    code,
                    None if code is None else "bench failure",
                )
            )
            image_rows += [(attempt_id, 0, "system-part1", "11" * 32), (attempt_id, 1, "user-part", "22" * 32)]
            step = (ended - started) / len(PHASES)
            phase_rows += [
                (attempt_id, i + 1, p, started + i * step, started + (i + 1) * step) for i, p in enumerate(PHASES)
            ]
            if result == "pass" and passed_at is None:
                passed_at = ended
                outbox_rows.append((device, ended, ended))
        first_result, _, first_end, _ = attempts[0]
        last_result, _, last_end, _ = attempts[-1]
        device_rows.append(
            (
                device,
                "argon",
                attempts[0][1],
                last_end,
                last_result,
                attempt_id,
                len(attempts),
                first_result,
                first_end,
                passed_at,
            )
        )
        if len(device_rows) >= 20_000:
            flush()
    flush()
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return attempt_id, time.perf_counter() - start


def timed(work: Callable[[], object], repeats: int = 3) -> float:
    """Best of ``repeats`` wall times: the figure once the file is in the page cache, as on a station."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def command(args: list[str]) -> Callable[[], object]:
    def run() -> object:
        return subprocess.run([str(STATION), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each durable-write run")
    parser.add_argument("--dir", type=Path, default=default_db_path().parent)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-registry-", dir=args.dir))
    try:
        print(f"registry bench in {folder}")
        for threads in (1, 16):
            # The disk's speed drifts (other work, the host's cache): measure it right around each run.
            before = syncs_per_second(folder, 1.0)
            rate, total = durable_attempts(folder, threads, args.seconds)
            bound = (before + syncs_per_second(folder, 1.0)) / 2 / COMMITS_PER_ATTEMPT
            print(
                f"durable attempts, {threads:>2} thread(s): {rate:8,.0f} attempts/s"
                f" ({rate * COMMITS_PER_ATTEMPT:,.0f} commits/s, {total:,} attempts);"
                f" disk bound {bound:,.0f}/s at {COMMITS_PER_ATTEMPT} synced commits each: {rate / bound:.2f}x;"
                f" {rate / LINE_NEED:,.0f}x what a {LINE_SLOTS}-slot line needs"
            )

        db = folder / "million.db"
        attempts, build_s = build_registry(db, args.devices)
        size_mb = sum(p.stat().st_size for p in folder.glob("million.db*")) / 1e6
        print(f"built {args.devices:,} devices / {attempts:,} attempts in {build_s:.1f} s ({size_mb:,.0f} MB)")

        with Registry(db, create=False) as registry:
            raw = sqlite3.connect(db)
            t_scan = timed(lambda: raw.execute("SELECT count(*) FROM attempts WHERE result != ''").fetchone())
            same_sql = (
                "SELECT * FROM summary_lines",
                "SELECT * FROM summary_devices",
                "SELECT * FROM summary_reasons",
            )
            t_same = timed(lambda: [raw.execute(q).fetchall() for q in same_sql], 20)
            t_ids = timed(lambda: raw.execute("SELECT device_id FROM devices").fetchall())
            raw.close()
            t_stats = timed(registry.stats, 20)
            last_event = registry.stats().last_event_at or 0.0
            t_stats_day = timed(lambda: registry.stats(since=last_event - 86400))
            with open(os.devnull, "w") as sink:
                t_txt = timed(lambda: sink.writelines(render(registry, ExportFormat.TXT)))
                t_csv = timed(lambda: sink.writelines(render(registry, ExportFormat.CSV, include_all=True)), 1)
                t_json = timed(lambda: sink.writelines(render(registry, ExportFormat.JSON, include_all=True)), 1)
        out = folder / "import.txt"
        c_stats = timed(command(["stats", "--db", str(db)]))
        c_help = timed(command(["--help"]))
        c_export = timed(command(["export", "--db", str(db), "-o", str(out)]))
        c_csv = timed(
            command(["export", "--db", str(db), "--all", "--format", "csv", "-o", str(folder / "all.csv")]), 1
        )
        print(f"bare SQLite: scan every attempt's result {t_scan:.3f} s; read every device ID {t_ids:.3f} s")
        print(
            f"stats (all time)            {t_stats * 1000:7.3f} ms"
            f" ({t_stats / t_same:.2f}x the same SQL bare, {t_same * 1000:.3f} ms;"
            f" the full scan it replaced: {t_scan:.3f} s)"
        )
        print(f"stats --since 1 day          {t_stats_day:7.3f} s")
        print(f"export txt (passed)          {t_txt:7.3f} s  ({t_txt / t_ids:.1f}x reading the IDs bare)")
        print(f"export csv --all             {t_csv:7.3f} s")
        print(f"export json --all            {t_json:7.3f} s")
        print(f"`station stats` process      {c_stats:7.3f} s  (`station --help` process: {c_help:.3f} s)")
        print(f"`station export -o` process  {c_export:7.3f} s ({sum(1 for _ in out.open()):,} IDs)")
        print(f"`station export --all csv`   {c_csv:7.3f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
