"""Two station processes writing one registry at once (a line and `station sync`, or two benches)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from station.store import OutboxState, Registry

WRITER = textwrap.dedent(
    """
    import sys
    from station.store import Registry, RunContext, Slot

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Registry(path) as registry:
        for i in range(count):
            attempt = registry.start_attempt(Slot(f"{name}-port"), RunContext(name))
            registry.record_phase(attempt, "write")
            registry.identify(attempt, f"{name}{i:04x}", "photon")
            registry.finish_attempt(attempt, "pass", enqueue_product="acme")
            registry.outbox.note_error("acme", [f"{name}{i:04x}"], "offline")
    """
)


def test_two_processes_record_into_one_registry(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    Registry(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "40"], stderr=subprocess.PIPE)
        for name in ("aa", "bb")
    ]
    with Registry(path, create=False) as reader:  # reports while both write: never blocked, never wrong
        for _ in range(20):
            stats = reader.stats()
            assert stats.attempts_passed <= 80
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()

    with Registry(path, create=False) as registry:
        stats = registry.stats()
        assert (stats.attempts, stats.attempts_passed, stats.devices_passed) == (80, 80, 80)
        assert [(line.station_id, line.passed) for line in stats.by_line] == [("aa", 40), ("bb", 40)]
        entries = registry.outbox.entries()
        assert len(entries) == 80
        assert all(e.state is OutboxState.PENDING and e.tries == 1 for e in entries)
        assert registry.check_consistency() == ()
