"""The append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so editing, removing or
reordering any entry breaks the chain from there on. The newest (seq, hash) is also written to
a head file outside the database, which catches removal of the newest entries.

Entries are written at once (:meth:`AuditLog.append`) or deferred (:meth:`AuditLog.defer`) and
written later by :meth:`AuditLog.flush` in one transaction with one head-file write (group
commit). Deferred entries keep the order they were made in, and are always written before any
later entry, so the chain reads the same either way; a crash loses the deferred entries not yet
flushed, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from oncofed.errors import OncofedError
from oncofed.storage.atomic import write_atomic

GENESIS = "0" * 64


class AuditError(OncofedError):
    """The audit log could not be written or read."""

    code = "audit_error"


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    details: str
    prev_hash: str
    hash: str


_COLUMNS = [f.name for f in fields(AuditEntry)]
_INSERT = (
    f"INSERT INTO audit ({', '.join(_COLUMNS)}) SELECT {', '.join(['unnest(?)'] * len(_COLUMNS))}"
)
"""One statement over column lists: executemany runs one INSERT a row (~1-3 ms each)."""


@dataclass(frozen=True)
class Break:
    """Where and why the chain does not verify."""

    seq: int
    reason: str


def entry_hash(prev_hash: str, seq: int, time: str, actor: str, action: str, target: str,
               details: str) -> str:  # fmt: skip
    """The hash of an entry: SHA-256 over the previous hash and the entry's canonical JSON."""
    body = json.dumps([seq, time, actor, action, target, details], ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class _Unwritten:
    """An entry made but not yet given its place in the chain."""

    time: str
    actor: str
    action: str
    target: str
    details: str


def _unwritten(actor: str, action: str, target: str, details: dict[str, Any] | None) -> _Unwritten:
    text = json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str)
    return _Unwritten(datetime.now(UTC).isoformat(), actor, action, target, text)


class AuditLog:
    """The audit table of a catalog connection, with its head file.

    :meth:`append` and :meth:`flush` use the connection: callers serialise them as they
    serialise other writes on it. :meth:`defer` touches only memory and may be called from any
    thread at any time.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, head_file: Path) -> None:
        self.con = con
        self.head_file = head_file
        self._deferred: list[_Unwritten] = []
        self._deferred_lock = threading.Lock()

    def append(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Record an action now (after any deferred entries); returns the entry written."""
        return self._write([_unwritten(actor, action, target, details)])[-1]

    def defer(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        """Record an action at the next :meth:`flush` or :meth:`append` (timed now)."""
        entry = _unwritten(actor, action, target, details)
        with self._deferred_lock:
            self._deferred.append(entry)

    @property
    def deferred(self) -> int:
        """How many entries wait for the next flush."""
        return len(self._deferred)

    def flush(self) -> int:
        """Write the deferred entries in one transaction; returns how many were written."""
        return len(self._write([]))

    def _write(self, new: list[_Unwritten]) -> list[AuditEntry]:
        with self._deferred_lock:
            batch, self._deferred = self._deferred + new, []
        if not batch:
            return []
        try:
            written = self._insert(batch)
        except AuditError:
            with self._deferred_lock:  # keep the deferred ones for the next try
                self._deferred[:0] = batch[: len(batch) - len(new)]
            raise
        self._write_head(written[-1].seq, written[-1].hash)
        return written

    def _insert(self, batch: list[_Unwritten]) -> list[AuditEntry]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            last = self.con.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
            written: list[AuditEntry] = []
            for item in batch:
                seq += 1
                digest = entry_hash(
                    prev, seq, item.time, item.actor, item.action, item.target, item.details
                )
                written.append(
                    AuditEntry(seq, item.time, item.actor, item.action, item.target,
                               item.details, prev, digest)
                )  # fmt: skip
                prev = digest
            self.con.execute(
                _INSERT, [[getattr(entry, name) for entry in written] for name in _COLUMNS]
            )
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            self.con.execute("ROLLBACK")
            raise AuditError(f"cannot append to the audit log: {exc}") from exc
        return written

    def entries(self, *, since: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Entries in sequence order."""
        rows = self.con.execute(
            "SELECT seq, time, actor, action, target, details, prev_hash, hash"
            " FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            [since, limit if limit is not None else 2**62],
        ).fetchall()
        return [AuditEntry(int(r[0]), *r[1:]) for r in rows]

    def verify(self) -> list[Break]:
        """Every place where the chain or the head file disagrees with the entries."""
        breaks: list[Break] = []
        prev, expected_seq = GENESIS, 1
        rows = self.con.execute(
            "SELECT seq, time, actor, action, target, details, prev_hash, hash FROM audit"
            " ORDER BY rowid"
        ).fetchall()
        for seq, time, actor, action, target, details, prev_hash, digest in rows:
            if seq != expected_seq:
                breaks.append(Break(seq, f"expected entry {expected_seq} here (removed or moved)"))
            if prev_hash != prev:
                breaks.append(Break(seq, "does not follow the entry before it"))
            if entry_hash(prev_hash, seq, time, actor, action, target, details) != digest:
                breaks.append(Break(seq, "content does not match its hash (edited)"))
            prev, expected_seq = digest, seq + 1
        head = self._read_head()
        if head is not None and head != (expected_seq - 1, prev):
            breaks.append(Break(head[0], f"head file says entry {head[0]} is the newest"))
        return breaks

    def _write_head(self, seq: int, digest: str) -> None:
        write_atomic(self.head_file, f"{seq} {digest}\n")

    def _read_head(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.head_file.read_text(encoding="ascii").split()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AuditError(f"unreadable audit head file {self.head_file}: {exc}") from exc
        return int(seq), digest
