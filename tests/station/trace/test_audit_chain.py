"""The audit log's hash chain and signed heads: intact passes; any one edited field, deleted row or
pair of swapped rows is named (hypothesis over random edits), and a forger who rewrites the whole
chain is caught by the station key's signature."""

from __future__ import annotations

import sqlite3
import stat
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.store import Registry
from station.store.audit import AuditAction, ProblemKind, entry_digest
from station.store.station_key import default_key_path, head_checker, load_public
from station.trace.run_audit import sign_head
from tests.station.trace.conftest import station

FIELDS = ("at", "station_id", "actor", "role", "action", "subject", "before", "after", "prev_hash", "hash")


def _fill(db: Path, count: int) -> None:
    with Registry(db) as registry:
        for n in range(count):
            registry.audit.append(
                AuditAction.RETRY if n % 2 else AuditAction.START,
                station_id="line-1",
                actor=f"op{n % 3}",
                role="operator",
                subject=f"sim-{n}",
                before={"n": n},
                after={"n": n + 1},
            )
        sign_head(registry, "line-1", None)


def _verify(db: Path) -> tuple[int | None, str | None]:
    with Registry(db, create=False) as registry:
        report = registry.audit.verify(head_checker(load_public(default_key_path(db))))
    return (None, None) if report.problem is None else (report.problem.seq, report.problem.kind.value)


def _raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def test_untouched_log_verifies_through_the_cli_and_the_key_is_0600(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    _fill(db, 5)
    assert stat.S_IMODE(default_key_path(db).stat().st_mode) == 0o600
    result = station("audit", "verify", "--db", str(db))
    assert result.exit_code == 0 and "audit log intact: 5 entries, 1 signed heads" in result.output
    listed = station("audit", "--db", str(db), "--since", "1d")
    assert listed.exit_code == 0 and listed.output.count("line-1") == 5


edits = st.one_of(
    st.tuples(st.just("edit"), st.integers(1, 8), st.sampled_from(FIELDS)),
    st.tuples(st.just("delete"), st.integers(1, 8), st.just("")),
    st.tuples(st.just("swap"), st.integers(1, 8), st.integers(1, 8)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(2, 8), edit=edits)
def test_any_one_edit_delete_or_swap_is_named(count: int, edit: tuple[str, int, object]) -> None:
    kind, row, arg = edit
    row = (row - 1) % count + 1
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "station.db"
        _fill(db, count)
        assert _verify(db) == (None, None)
        conn = _raw(db)
        if kind == "edit":
            column = str(arg)
            if column == "at":
                conn.execute("UPDATE audit SET at = at + 1 WHERE seq = ?", (row,))
            else:
                conn.execute(f"UPDATE audit SET {column} = coalesce({column}, '') || 'x' WHERE seq = ?", (row,))
            expected = row
        elif kind == "delete":
            conn.execute("DELETE FROM audit WHERE seq = ?", (row,))
            expected = row
        else:
            other = (int(str(arg)) - 1) % count + 1
            if other == row:
                other = row % count + 1
            cols = ", ".join(f"{c} = (SELECT {c} FROM audit WHERE seq = :b)" for c in FIELDS)
            back = ", ".join(f"{c} = (SELECT {c} FROM audit_swap)" for c in FIELDS)
            conn.execute("CREATE TEMP TABLE audit_swap AS SELECT * FROM audit WHERE seq = :a", {"a": row})
            conn.execute(f"UPDATE audit SET {cols} WHERE seq = :a", {"a": row, "b": other})
            conn.execute(f"UPDATE audit SET {back} WHERE seq = :b", {"b": other})
            expected = min(row, other)
        conn.close()
        seq, problem = _verify(db)
        assert seq == expected, (kind, row, arg, problem)


def test_cli_names_the_entry_and_exits_1(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    _fill(db, 4)
    conn = _raw(db)
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    conn.close()
    result = station("audit", "verify", "--db", str(db))
    assert result.exit_code == 1
    assert "entry 3 was edited" in result.output


def test_a_rewritten_chain_with_fresh_hashes_fails_the_signature(tmp_path: Path) -> None:
    """SHA-256 alone can be recomputed by whoever edits the file; the signed head cannot."""
    db = tmp_path / "station.db"
    _fill(db, 3)
    conn = _raw(db)
    rows = conn.execute("SELECT seq, at, station_id, actor, role, action, subject, before, after FROM audit").fetchall()
    prev = "0" * 64
    for seq, at, station_id, actor, role, action, subject, before, after in sorted(rows):
        actor = "mallory" if seq == 2 else actor
        digest = entry_digest(prev, seq, at, station_id, actor, role, action, subject, before, after)
        conn.execute("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (actor, prev, digest, seq))
        prev = digest
    conn.close()
    assert _verify(db)[1] == ProblemKind.REWRITTEN.value
    # Re-signing with another key is caught too: the head must be signed by this station's key.
    conn = _raw(db)
    conn.execute("DELETE FROM audit_heads")
    conn.close()
    other = tmp_path / "other.key"
    with Registry(db) as registry:
        sign_head(registry, "line-1", other)
    assert _verify(db)[1] == ProblemKind.BAD_SIGNATURE.value


def test_a_run_signs_the_head_with_the_key_the_profile_names(tmp_path: Path) -> None:
    from tests.station.trace.conftest import profile, release, run_line

    db = tmp_path / "station.db"
    p = profile(tmp_path, release(tmp_path, 3), extra='station_key = "keys/bench.key"\n')
    assert run_line(p, db, "ana", None).exit_code == 0
    key = tmp_path / "keys" / "bench.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and not default_key_path(db).exists()
    with Registry(db, create=False) as registry:
        (head,) = registry.audit.heads()
        assert head.seq == registry.audit.head()[0] and [e.action for e in registry.audit.entries()] == [
            "start",
            "stop",
        ]
    assert station("audit", "verify", "--db", str(db), "--key", str(key)).exit_code == 0
    key.chmod(0o644)
    loose = station("audit", "verify", "--db", str(db), "--key", str(key))
    assert loose.exit_code == 2 and "readable by group or others" in loose.output
