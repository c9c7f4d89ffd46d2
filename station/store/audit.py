"""The audit log: every action that changes what goes on a board or into the console, hash-chained.

Each entry holds the SHA-256 of the one before it (the first holds 64 zeros), over a fixed
encoding of its own fields, so editing, removing or reordering any entry breaks the chain from
there on. Because SHA-256 is unkeyed, a forger could rewrite the whole chain; the head is
therefore signed with the station's key at the end of each run (``audit_heads``), and
``verify_chain`` checks the chain against every signed head.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from station.store.errors import InvalidRecord

if TYPE_CHECKING:
    from station.store.registry import Registry

GENESIS = "0" * 64
MAX_AUDIT_TEXT = 2000  # before/after JSON, subjects: bounded so a bad caller cannot bloat rows


class AuditAction(StrEnum):
    """What was done; stable strings auditors filter on."""

    START = "start"  # a station run began (profile, bundle, release)
    STOP = "stop"  # a station run ended (counts)
    RETRY = "retry"
    OVERRIDE = "override"
    PROFILE_CHANGE = "profile-change"  # this station now runs another profile or bundle than last time
    ALLOW_DOWNGRADE = "allow-downgrade"
    SCAN = "scan"  # a serial number linked to a device
    SYNC = "sync"
    CONSOLE_UPLOAD = "console-upload"
    LOCK = "lock"
    UNLOCK = "unlock"
    RELEASE = "release"
    OPERATOR_ADD = "operator-add"
    OPERATOR_DISABLE = "operator-disable"
    LABEL_REPRINT = "label-reprint"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float  # unix seconds
    station_id: str
    actor: str
    role: str  # the actor's role when acting; "unmanaged" on a station with no operators yet
    action: str
    subject: str | None  # what it acted on: a device, a product, a slot, an operator
    before: str | None  # JSON text, where it applies
    after: str | None
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "station_id": self.station_id,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "subject": self.subject,
            "before": None if self.before is None else json.loads(self.before),
            "after": None if self.after is None else json.loads(self.after),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class SignedHead:
    """The chain's last entry when a run ended, signed with the station key (Ed25519, hex)."""

    id: int
    seq: int
    hash: str
    station_id: str
    public_key: str
    signature: str
    signed_at: float


class ProblemKind(StrEnum):
    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    REWRITTEN = "rewritten"  # the chain is consistent but no longer matches a signed head
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class ChainProblem:
    seq: int  # the first entry that is not as it was written
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class ChainReport:
    entries: int
    heads: int
    unsigned: int  # entries after the last signed head (not yet protected against truncation)
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def head_message(station_id: str, seq: int, digest: str) -> bytes:
    """The bytes a station signs for a head."""
    return f"benchflash-audit-head\n{station_id}\n{seq}\n{digest}\n".encode()


def _json_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    if len(text) > MAX_AUDIT_TEXT:
        raise InvalidRecord(f"audit {what} is longer than {MAX_AUDIT_TEXT} characters")
    return text


def entry_digest(
    prev_hash: str,
    seq: int,
    at: float,
    station_id: str,
    actor: str,
    role: str,
    action: str,
    subject: str | None,
    before: str | None,
    after: str | None,
) -> str:
    """SHA-256 (hex) of the previous hash and this entry's fields in one fixed JSON encoding."""
    body = json.dumps(
        [seq, at, station_id, actor, role, action, subject, before, after],
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _digest_of(e: AuditEntry) -> str:
    return entry_digest(e.prev_hash, e.seq, e.at, e.station_id, e.actor, e.role, e.action, e.subject, e.before, e.after)


_COLUMNS = "seq, at, station_id, actor, role, action, subject, before, after, prev_hash, hash"


def _entry(row: Sequence[Any]) -> AuditEntry:
    seq, at, station, actor, role, action, subject, before, after, prev, digest = row
    return AuditEntry(
        int(seq),
        float(at),
        str(station),
        str(actor),
        str(role),
        str(action),
        None if subject is None else str(subject),
        None if before is None else str(before),
        None if after is None else str(after),
        str(prev),
        str(digest),
    )


def append_in(
    conn: sqlite3.Connection,
    now: float,
    action: AuditAction | str,
    *,
    station_id: str,
    actor: str,
    role: str,
    subject: str | None = None,
    before: object = None,
    after: object = None,
) -> AuditEntry:
    """Append one entry inside the caller's write transaction (so the action and its record commit together)."""
    for what, text in (("station id", station_id), ("actor", actor), ("role", role)):
        if not text or len(text) > 200:
            raise InvalidRecord(f"audit {what} must be 1-200 characters, not {text!r}")
    if subject is not None and len(subject) > 200:
        raise InvalidRecord("audit subject is longer than 200 characters")
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
    before_text, after_text = _json_text(before, "before"), _json_text(after, "after")
    name = str(AuditAction(action)) if isinstance(action, AuditAction) else str(action)
    digest = entry_digest(prev, seq, now, station_id, actor, role, name, subject, before_text, after_text)
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, now, station_id, actor, role, name, subject, before_text, after_text, prev, digest),
    )
    return AuditEntry(seq, now, station_id, actor, role, name, subject, before_text, after_text, prev, digest)


def verify_chain(
    entries: Iterable[AuditEntry],
    heads: Sequence[SignedHead],
    signature_ok: Callable[[SignedHead], str | None],
) -> ChainReport:
    """Walk the chain oldest first; the first entry that is not as written is the problem.

    ``signature_ok`` returns None for a good head, else why it is not (wrong key, bad signature).
    """
    prev_hash, expected, count = GENESIS, 1, 0
    digests: dict[int, str] = {}
    problem: ChainProblem | None = None
    for e in entries:
        count += 1
        if e.seq != expected:
            if e.seq > expected:
                gone = expected if e.seq == expected + 1 else f"{expected}-{e.seq - 1}"
                problem = ChainProblem(
                    expected,
                    ProblemKind.REMOVED,
                    f"entry {gone} was removed (entries jump from {expected - 1} to {e.seq})",
                )
            else:  # cannot happen with seq as primary key, but a copied table could
                problem = ChainProblem(
                    e.seq, ProblemKind.REORDERED, f"entry {e.seq} appears again after {expected - 1}"
                )
            break
        if e.prev_hash != prev_hash:
            problem = ChainProblem(
                e.seq,
                ProblemKind.REORDERED,
                f"entry {e.seq} does not follow entry {e.seq - 1} (entries reordered, or one replaced)",
            )
            break
        if _digest_of(e) != e.hash:
            problem = ChainProblem(
                e.seq, ProblemKind.EDITED, f"entry {e.seq} was edited (its fields no longer match its hash)"
            )
            break
        digests[e.seq] = e.hash
        prev_hash, expected = e.hash, expected + 1
    last = expected - 1
    if problem is None:
        for head in heads:
            if head.seq > last:
                problem = ChainProblem(
                    last + 1,
                    ProblemKind.REMOVED,
                    f"entry {last + 1} was removed: the chain ends at {last} but was signed up to entry {head.seq}",
                )
                break
            if head.seq > 0 and digests.get(head.seq) != head.hash:
                problem = ChainProblem(
                    1,
                    ProblemKind.REWRITTEN,
                    f"entries up to {head.seq} were rewritten: they no longer match the head signed"
                    f" at entry {head.seq}",
                )
                break
            why = signature_ok(head)
            if why is not None:
                problem = ChainProblem(head.seq, ProblemKind.BAD_SIGNATURE, f"signed head at entry {head.seq}: {why}")
                break
    signed_to = max((h.seq for h in heads), default=0)
    return ChainReport(count, len(heads), max(0, last - signed_to), problem)


class AuditLog:
    """The registry's audit table: append (one committed transaction each), list, heads."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def append(
        self,
        action: AuditAction | str,
        *,
        station_id: str,
        actor: str,
        role: str,
        subject: str | None = None,
        before: object = None,
        after: object = None,
    ) -> AuditEntry:
        with self._registry._writing() as (conn, now):
            return append_in(
                conn,
                now,
                action,
                station_id=station_id,
                actor=actor,
                role=role,
                subject=subject,
                before=before,
                after=after,
            )

    def entries(self, *, since: float | None = None, action: str | None = None) -> list[AuditEntry]:
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if action is not None:
            where.append("action = ?")
            args.append(action)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._registry._reading() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM audit{clause} ORDER BY seq", args).fetchall()
        return [_entry(r) for r in rows]

    def last(self, action: str, *, station_id: str) -> AuditEntry | None:
        with self._registry._reading() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE action = ? AND station_id = ? ORDER BY seq DESC LIMIT 1",
                (action, station_id),
            ).fetchone()
        return None if row is None else _entry(row)

    def head(self) -> tuple[int, str]:
        """The last entry's seq and hash; (0, 64 zeros) for an empty log."""
        with self._registry._reading() as conn:
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def sign_head(self, station_id: str, sign: Callable[[bytes], bytes], public_key_hex: str) -> SignedHead:
        """Sign the current head and store the signature; one transaction, so no entry slips in between."""
        with self._registry._writing() as (conn, now):
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, digest = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
            signature = sign(head_message(station_id, seq, digest)).hex()
            cursor = conn.execute(
                "INSERT INTO audit_heads (seq, hash, station_id, public_key, signature, signed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (seq, digest, station_id, public_key_hex, signature, now),
            )
            return SignedHead(int(cursor.lastrowid or 0), seq, digest, station_id, public_key_hex, signature, now)

    def heads(self) -> list[SignedHead]:
        with self._registry._reading() as conn:
            rows = conn.execute(
                "SELECT id, seq, hash, station_id, public_key, signature, signed_at FROM audit_heads ORDER BY id"
            ).fetchall()
        return [SignedHead(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), float(r[6])) for r in rows]

    def verify(self, signature_ok: Callable[[SignedHead], str | None]) -> ChainReport:
        with self._registry._snapshot() as conn:
            heads = [
                SignedHead(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), float(r[6]))
                for r in conn.execute(
                    "SELECT id, seq, hash, station_id, public_key, signature, signed_at FROM audit_heads ORDER BY id"
                )
            ]
            rows = (_entry(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"))
            return verify_chain(rows, heads, signature_ok)
