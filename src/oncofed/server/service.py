"""One node shared by the server's request handlers and network receivers.

DuckDB allows one writer process, so the server process owns the node: HTTP handlers, STOW-RS
and the DICOM SCP reach the catalog only through this object. Writes hold one lock (DuckDB
connections are not safe to share between threads without one); reads run at the same time on
cursors of their own. Read audit entries are group-committed: written at most
``audit_delay_s`` after the read, and on close.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from oncofed.access.cache import PrincipalCache
from oncofed.access.policy import Principal
from oncofed.access.store import IdentityStore
from oncofed.catalog.catalog import Catalog
from oncofed.catalog.writer import CollectionSpec
from oncofed.closing import Closing
from oncofed.ingest.pipeline import Outcome
from oncofed.ingest.receive import Conflict, Receiver, ReceiveSession
from oncofed.ingest.report import IngestReport
from oncofed.ingest.stages import DeidentifyStage
from oncofed.node import Node
from oncofed.server.read_cache import ReadCache

log = logging.getLogger(__name__)

RECEIVED_COLLECTION = "received"
AUDIT_DELAY_S = 0.2
"""How long a read's audit entry may wait to be written (what a crash can lose)."""
BATCH_SYNC_DELAY_S = 0.1
"""With ``ingest_fsync = "batch"``: how long a received blob may wait for its fsync."""


@dataclass(frozen=True)
class PayloadResult:
    """A network receive: the report, one outcome per processed payload (in order), and the
    SOP Instance UIDs that conflicted with stored instances."""

    report: IngestReport
    outcomes: list[Outcome]
    conflicts: set[str]


class _Readers(Closing):
    """DuckDB cursors for concurrent reads, each used by one thread at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._free: list[duckdb.DuckDBPyConnection] = []
        self._made: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._free:
                cursor = self._free.pop()
            else:
                cursor = self._con.cursor()
                self._made.append(cursor)
        try:
            yield cursor
        finally:
            with self._lock:
                self._free.append(cursor)

    def close(self) -> None:
        with self._lock:
            for cursor in self._made:
                cursor.close()
            self._made.clear()
            self._free.clear()


class NodeService(Closing):
    """Thread-safe access to an open node."""

    def __init__(
        self,
        node: Node,
        *,
        receive_collection: str = RECEIVED_COLLECTION,
        audit_delay_s: float = AUDIT_DELAY_S,
    ) -> None:
        self.node = node
        self.receive_collection = receive_collection
        self._lock = threading.RLock()
        self._readers = _Readers(node.catalog.con)
        self._stages: dict[str, DeidentifyStage] = {}
        self.principals = PrincipalCache()
        self.reads = ReadCache()
        self._closed = threading.Event()
        self._audit_delay_s = audit_delay_s
        delay = BATCH_SYNC_DELAY_S if node.settings.ingest_fsync == "batch" else None
        workers = node.settings.ingest_workers or os.cpu_count() or 1
        self._receiver = Receiver(node.store, self._writer, self._stored_digests, delay, workers)
        try:
            for report in self._receiver.recover():
                self._record(report, "recovery")
        except BaseException:
            self._receiver.close()
            raise
        self._flusher = threading.Thread(
            target=self._flush_audit_loop, name="audit-flush", daemon=True
        )
        self._flusher.start()

    def start_workers(self) -> None:
        """Start the de-identification worker processes for large requests now (a served node
        does; otherwise the first large request starts them and is de-identified here)."""
        self._receiver.cleaners.start()

    @classmethod
    def open(cls, home: Path | str) -> NodeService:
        """Open the node at ``home`` for serving."""
        return cls(Node(home))

    def close(self) -> None:
        """Catalogue what was received, write pending audit entries, close the node."""
        if self._closed.is_set():
            return
        self._receiver.close()
        self._closed.set()
        self._flusher.join()
        with self._lock:
            self.flush_audit()
            self._readers.close()
            self.node.close()

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        """The catalog, held exclusively for the duration of the ``with`` block; remembered
        tokens and reads are forgotten after it (the block may have changed users, tokens,
        grants or instances)."""
        try:
            with self._lock:
                yield self.node.catalog
        finally:
            self.principals.invalidate()
            self.reads.invalidate()

    def authenticate(self, token: str) -> Principal:
        """The principal of an oncofed API token (``ofd_...``), remembered for up to
        ``TOKEN_TTL_S`` (see :mod:`oncofed.access.cache`); AuthError when it stands for none."""
        return self.principals.verify(token, self._check_token)

    def _check_token(self, token: str) -> tuple[Principal, datetime]:
        with self.connection() as con:
            return IdentityStore(con).authenticate_until(token)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB cursor of the catalog for reading, not shared while the block runs; reads
        on other cursors and the writer's transactions go on at the same time."""
        with self._readers.cursor() as cursor:
            yield cursor

    def audit(
        self, actor: str, action: str, target: str, details: dict[str, object] | None = None
    ) -> None:
        """Append to the node's audit log now (durable when this returns)."""
        with self._lock:
            self.node.audit.append(actor, action, target, details)

    def audit_read(
        self, actor: str, action: str, target: str, details: dict[str, object] | None = None
    ) -> None:
        """Record a read in the audit log within ``audit_delay_s`` (group commit)."""
        self.node.audit.defer(actor, action, target, details)

    def flush_audit(self) -> None:
        """Write the deferred audit entries now."""
        with self._lock:
            self.node.audit.flush()

    def blob_path(self, sha256: str) -> Path:
        """Where a stored blob lives (blobs are immutable: no lock needed to read them)."""
        return self.node.store.path_for(sha256)

    def receiving(self, collection: str | None = None, *, actor: str = "network") -> ReceiveSession:
        """A session taking instances into ``collection`` (default: the receive collection)
        through the node's de-identification; end it with :meth:`finish`."""
        collection_id = collection or self.receive_collection
        return self._receiver.session(collection_id, self._stage(collection_id), actor)

    def finish(self, session: ReceiveSession) -> IngestReport:
        """Wait until the session's instances are catalogued; save and audit its report."""
        report = session.close()
        if report.files_seen:
            self._record(report, session.actor)
        return report

    def receive(
        self,
        payloads: Sequence[tuple[str, bytes]],
        collection: str | None = None,
        *,
        actor: str = "network",
    ) -> PayloadResult:
        """Ingest objects received over the network through the node's de-identification;
        the result says what became of each payload (its stored, de-identified UIDs).

        The payloads' UIDs are looked up together and their blobs fsynced together (see
        :meth:`ReceiveSession.accept_many`); a store failure fails the payloads stored with it."""
        session = self.receiving(collection, actor=actor)
        outcomes: list[Outcome] = []
        try:
            outcomes = session.accept_many(payloads)
        finally:
            report = self.finish(session)
        conflicts = {o.sop_uid for o in outcomes if isinstance(o, Conflict)}
        return PayloadResult(report, outcomes, conflicts)

    def _stage(self, collection_id: str) -> DeidentifyStage:
        """The collection's de-identification stage, made (and the collection created) once."""
        with self._lock:
            if collection_id not in self._stages:
                spec = CollectionSpec(collection_id, collection_id)
                stage = self.node.stage_for(spec)
                self.node.ensure_collection(spec)
                self._stages[collection_id] = stage
            return self._stages[collection_id]

    def _record(self, report: IngestReport, actor: str) -> None:
        with self._lock:
            self.node.record_ingest(report, actor)

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            with self._lock:
                yield self.node.catalog.con
        finally:
            self.reads.invalidate()

    def _stored_digests(self, sop_uids: Sequence[str]) -> dict[str, str]:
        """SOP Instance UID → sha256 of those catalogued, in one query (for one UID, an
        equality: 3x quicker in DuckDB than a list, measured on 2,000 and 200,000 rows)."""
        if not sop_uids:
            return {}
        with self.connection() as con:
            if len(sop_uids) == 1:
                query = con.execute(
                    "SELECT sop_uid, sha256 FROM instance WHERE sop_uid = ?", [sop_uids[0]]
                )
            else:
                query = con.execute(
                    "SELECT sop_uid, sha256 FROM instance WHERE sop_uid IN (SELECT unnest(?))",
                    [list(sop_uids)],
                )
            rows = query.fetchall()
        return {str(uid): str(digest) for uid, digest in rows}

    def _flush_audit_loop(self) -> None:
        while not self._closed.wait(self._audit_delay_s):
            if self.node.audit.deferred:
                try:
                    self.flush_audit()
                except Exception:  # keep flushing later; the entries stay deferred
                    log.exception("cannot write deferred audit entries")
