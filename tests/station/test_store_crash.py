"""``kill -9`` in the middle of recording: the next open interrupts what was running and loses nothing.

A real child process records attempts from several threads in a loop and acknowledges each finished
attempt on stdout only after ``finish_attempt`` returned; the parent kills it without warning, then
checks the registry against what was acknowledged.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from station.store import AttemptResult, OutboxState, Registry

CHILD = textwrap.dedent(
    """
    import sys, threading
    from station.store import Registry, RunContext, Slot

    path, round_no = sys.argv[1], int(sys.argv[2])
    registry = Registry(path)
    out = threading.Lock()

    def worker(n):
        i = 0
        while True:
            attempt = registry.start_attempt(Slot(f"1-{n}", f"S{n}"), RunContext("crash-bench", operator="ci"))
            registry.record_phase(attempt, "identify")
            device = f"{round_no:02x}{n:02x}{i:020x}"
            registry.identify(attempt, device, "photon")
            registry.record_phase(attempt, "write")
            registry.record_phase(attempt, "verify")
            if i % 4 == 3:
                registry.finish_attempt(attempt, "fail", "verify-mismatch", "differs")
                tag = "F"
            else:
                registry.finish_attempt(attempt, "pass", enqueue_product="acme")
                tag = "P"
            with out:
                sys.stdout.write(f"{tag} {attempt} {device}\\n")
                sys.stdout.flush()
            i += 1

    for n in range(4):
        threading.Thread(target=worker, args=(n,), daemon=True).start()
    threading.Event().wait()
    """
)


def _run_and_kill(path: Path, round_no: int, passes_before_kill: int) -> list[tuple[str, int, str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(round_no)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    acknowledged: list[tuple[str, int, str]] = []
    buffer = b""
    deadline = time.monotonic() + 30
    try:
        while sum(tag == "P" for tag, _, _ in acknowledged) < passes_before_kill:
            if time.monotonic() > deadline or child.poll() is not None:
                err = child.stderr.read().decode() if child.stderr and child.poll() is not None else ""
                pytest.fail(f"child recorded too slowly or died: {err}")
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if ready:
                buffer += os.read(child.stdout.fileno(), 65536)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    tag, attempt, device = line.decode().split()
                    acknowledged.append((tag, int(attempt), device))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    # Lines written before the kill were acknowledged too.
    for line in (buffer + rest).split(b"\n"):
        if line.count(b" ") == 2:
            tag, attempt, device = line.decode().split()
            acknowledged.append((tag, int(attempt), device))
    assert child.returncode == -signal.SIGKILL
    return acknowledged


def test_kill_9_mid_run_loses_no_pass_and_counts_none_twice(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    acknowledged: list[tuple[str, int, str]] = []
    for round_no, kill_after in enumerate((25, 7, 40)):
        acknowledged += _run_and_kill(path, round_no, kill_after)

        with Registry(path, create=False) as registry:  # the next open recovers, and goes on
            assert registry.check_consistency() == ()
            attempts = registry.history()
            by_id = {a.id: a for a in attempts}
            results = Counter(a.result for a in attempts)
            assert results[AttemptResult.RUNNING] == 0
            # At most one attempt per worker thread was in flight at each kill.
            assert results[AttemptResult.INTERRUPTED] <= 4 * (round_no + 1)
            interrupted_total = results[AttemptResult.INTERRUPTED]
            for tag, attempt_id, device in acknowledged:
                record = by_id[attempt_id]
                assert record.device_id == device
                assert record.result is (AttemptResult.PASS if tag == "P" else AttemptResult.FAIL)

            passes = Counter(a.device_id for a in attempts if a.result is AttemptResult.PASS)
            assert all(count == 1 for count in passes.values()), "a PASS was recorded twice"
            assert set(passes) >= {d for tag, _, d in acknowledged if tag == "P"}
            queued = {e.device_id for e in registry.outbox.entries(product="acme")}
            assert queued == set(passes), "outbox out of step with the PASSes"
            assert registry.outbox.counts()[OutboxState.PENDING] == len(passes)
            stats = registry.stats()
            assert stats.devices_passed == len(passes) == stats.attempts_passed
            interrupted = [a for a in attempts if a.result is AttemptResult.INTERRUPTED]
            assert all(a.error_code == "interrupted" and a.ended_at is not None for a in interrupted)
    # Four threads busy recording: some attempt was caught mid-way by at least one of the kills.
    assert interrupted_total > 0
