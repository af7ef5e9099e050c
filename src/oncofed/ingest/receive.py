"""Receiving instances over the network: acknowledged once durable, catalogued in batches.

A :class:`ReceiveSession` (one per DIMSE association or STOW-RS request) runs each payload
through de-identify (which hands over the data set it wrote, so the catalog fields need no
second parse) → store (blob fsynced) → staging journal and says at once what became of it:
stored, already present, in conflict with a stored instance, or failed (a STOW-RS request's
instances are looked up in one query and fsynced together). With a ``sync_delay_s`` (node
setting ``ingest_fsync = "batch"``) a blob is acknowledged once written and fsynced by a
:class:`GroupSync` within that delay, always before its catalog row is written. The
:class:`Receiver`'s committer thread writes the catalog rows in batches: what was accepted in
the last ``COMMIT_DELAY_S`` (or ``COMMIT_RECORDS`` instances), or at once when a session is
closing, so a sender waits for no catalog transaction and the receiving threads are seldom
interrupted (they share one interpreter lock). Closing a session waits until its instances are
catalogued and returns its one report. After a crash, :meth:`Receiver.recover` catalogues what
the journals name.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from oncofed.catalog.records import InstanceRecord
from oncofed.catalog.writer import write_batch
from oncofed.closing import Closing
from oncofed.errors import IngestError, OncofedError, StoreError
from oncofed.ingest.cleaning import Cleaned, CleanerPool
from oncofed.ingest.journal import Journal, Staged, pending
from oncofed.ingest.parse import parse_instance
from oncofed.ingest.pipeline import Failure, Outcome, StoreFailure
from oncofed.ingest.report import IngestReport, Skipped
from oncofed.ingest.stages import DeidentifyStage
from oncofed.storage.blobstore import BlobStore, sha256_hex

log = logging.getLogger(__name__)

COMMIT_DELAY_S = 1.0
COMMIT_RECORDS = 500
RECOVERED_STAGE = "recovered"
CONFLICT_REASON = "SOP Instance UID already stored with different content"

Writer = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
"""Holds the catalog connection exclusively for a write."""
Lookup = Callable[[Sequence[str]], dict[str, str]]
"""SOP Instance UIDs → sha256 of those catalogued (the others are absent)."""
GROUP_BYTES = 64 << 20
"""De-identified bytes :meth:`ReceiveSession.accept_many` holds before storing them together."""


@dataclass(frozen=True)
class Conflict(Failure):
    """The SOP Instance UID is stored, or being stored, with other content."""

    sop_uid: str


class ReceiveSession:
    """The instances received over one association or in one request."""

    def __init__(
        self, receiver: Receiver, collection_id: str, stage: DeidentifyStage, actor: str
    ) -> None:
        self.receiver = receiver
        self.collection_id = collection_id
        self.stage = stage
        self.actor = actor
        self.report = IngestReport(collection=collection_id, stage=stage.name)
        self.journal = Journal(receiver.journal_dir)
        self.uncommitted = 0
        self.error: BaseException | None = None
        self.closed = False

    def accept(self, source: str, raw: bytes) -> Outcome:
        """Store one payload durably (or say why not) and queue it for the catalog."""
        return self.accept_many([(source, raw)])[0]

    def accept_many(self, payloads: Sequence[tuple[str, bytes]]) -> list[Outcome]:
        """Store payloads durably (or say why not), one outcome each, in order.

        Instances are de-identified, then taken in groups of up to ``GROUP_BYTES``: one catalog
        lookup and one fsync wait per group. A store failure fails its whole group.
        """
        outcomes: list[Outcome | None] = []
        group: list[tuple[int, Cleaned]] = []
        size = 0
        for cleaned in self.receiver.cleaners.clean(self.stage, payloads):
            outcomes.append(cleaned if isinstance(cleaned, Failure) else None)
            if isinstance(cleaned, Cleaned):
                group.append((len(outcomes) - 1, cleaned))
                size += len(cleaned.data)
            if size >= GROUP_BYTES or (group and len(outcomes) == len(payloads)):
                stored = self._store([c for _, c in group])
                for (index, _), outcome in zip(group, stored, strict=True):
                    outcomes[index] = outcome
                group, size = [], 0
        done = [outcome for outcome in outcomes if outcome is not None]
        for outcome in done:
            self._count(outcome)
        return done

    def _store(self, group: list[Cleaned]) -> list[Outcome]:
        """Claim the group's UIDs, then store, journal and queue the new instances together."""
        known = self.receiver.claim([c.record for c in group])
        outcomes: list[Outcome] = []
        fresh: list[Cleaned] = []
        for cleaned, digest in zip(group, known, strict=True):
            record = cleaned.record
            if digest is None:
                fresh.append(cleaned)
            elif digest != record.sha256:
                outcomes.append(Conflict(cleaned.source, CONFLICT_REASON, record.sop_uid))
                continue
            else:
                self.report.already_present += 1
            outcomes.append(record)
        if not fresh:
            return outcomes
        try:
            self.receiver.put([(c.data, c.record.sha256) for c in fresh])
            staged = [Staged(c.record.sha256, self.collection_id, c.source) for c in fresh]
            self.journal.append(staged)
            self.receiver.enqueue(self, [c.record for c in fresh])
        except (StoreError, OSError) as exc:
            self.receiver.release([c.record for c in fresh])
            reason = exc.message if isinstance(exc, StoreError) else str(exc)
            failed = {id(c.record): StoreFailure(c.source, reason) for c in fresh}
            return [failed.get(id(outcome), outcome) for outcome in outcomes]
        return outcomes

    def _count(self, outcome: Outcome) -> None:
        self.report.files_seen += 1
        if isinstance(outcome, Conflict):
            self.report.conflicts.append(Skipped(outcome.sop_uid, CONFLICT_REASON))
        elif isinstance(outcome, Failure):
            self.report.failed.append(Skipped(outcome.path, outcome.reason))

    def close(self) -> IngestReport:
        """Wait until this session's instances are catalogued; its report.

        Raises StoreError when the catalog could not take them now (they stay journalled and
        are catalogued when the node is next served).
        """
        self.receiver.wait_committed(self)
        if self.error is None:
            self.journal.remove()
        else:
            self.journal.close()
        self.closed = True
        self.report.finished_at = datetime.now(UTC).isoformat()
        if self.error is not None:
            raise StoreError(
                f"{self.report.files_seen} received instances are stored but not yet"
                f" catalogued ({self.error}); they will be when the node is next served"
            ) from self.error
        return self.report


class GroupSync(Closing):
    """fsyncs blobs written without one, at most ``delay_s`` after they were written (group
    commit: one wait for all the blobs of that interval), or at once on :meth:`flush`."""

    def __init__(self, store: BlobStore, delay_s: float) -> None:
        self.store = store
        self.delay_s = delay_s
        self._pending: list[str] = []
        self._changed = threading.Condition()
        self._syncing = threading.Lock()
        self._error: StoreError | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="blob-sync", daemon=True)
        self._thread.start()

    def add(self, digests: Sequence[str]) -> None:
        """Sync these blobs (written, not yet fsynced) within ``delay_s``."""
        with self._changed:
            self._pending += digests
            self._changed.notify_all()

    def flush(self) -> None:
        """Return once every blob added before this call is fsynced; StoreError if one (or an
        earlier one) could not be."""
        with self._syncing:
            with self._changed:
                digests, self._pending = self._pending, []
            try:
                self.store.sync(digests)
            except StoreError as exc:
                self._error = exc
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        """Sync what is pending, then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closing)
                self._changed.wait_for(lambda: self._closing, self.delay_s)
                closing = self._closing
            try:
                self.flush()
            except StoreError:
                log.exception("cannot fsync received blobs; they are not catalogued")
            if closing:
                return


class Receiver(Closing):
    """Accepts instances from many sessions; one committer thread catalogues them.

    With ``sync_delay_s`` (the node setting ``ingest_fsync = "batch"``), blobs are acknowledged
    once written and fsynced by a :class:`GroupSync` within that delay, and always before their
    catalog rows are written; without it, each blob is fsynced before it is acknowledged.
    """

    def __init__(
        self,
        store: BlobStore,
        writer: Writer,
        lookup: Lookup,
        sync_delay_s: float | None = None,
        workers: int = 1,
    ) -> None:
        self.store = store
        self.cleaners = CleanerPool(workers)
        self._group_sync = None if sync_delay_s is None else GroupSync(store, sync_delay_s)
        self.journal_dir = store.root / "staging"
        self._writer = writer
        self._lookup = lookup
        self._queue: list[tuple[ReceiveSession, InstanceRecord]] = []
        self._pending: dict[str, str] = {}
        self._changed = threading.Condition()
        self._waiting = 0
        self._closing = False
        self._thread = threading.Thread(
            target=self._commit_loop, name="catalog-commit", daemon=True
        )
        self._thread.start()

    def session(self, collection_id: str, stage: DeidentifyStage, actor: str) -> ReceiveSession:
        """A new session receiving into ``collection_id`` through ``stage``."""
        return ReceiveSession(self, collection_id, stage, actor)

    def put(self, blobs: Sequence[tuple[bytes, str]]) -> None:
        """Store received blobs: fsynced now, or by the group sync within its delay."""
        if self._group_sync is None:
            self.store.put_many(blobs)
            return
        self.store.put_many(blobs, sync=False)
        self._group_sync.add([digest for _, digest in blobs])

    def claim(self, records: Sequence[InstanceRecord]) -> list[str | None]:
        """For each record, the digest already stored (or being stored) under its SOP Instance
        UID; None where there is none, and the UID is then reserved for that record. One
        catalog lookup for all of them."""
        with self._changed:
            stored = self._lookup([r.sop_uid for r in records if r.sop_uid not in self._pending])
            known: list[str | None] = []
            for record in records:
                digest = self._pending.get(record.sop_uid) or stored.get(record.sop_uid)
                if digest is None:
                    self._pending[record.sop_uid] = record.sha256
                known.append(digest)
            return known

    def release(self, records: Sequence[InstanceRecord]) -> None:
        """Give up reservations made by :meth:`claim` (the blobs could not be stored)."""
        with self._changed:
            for record in records:
                if self._pending.get(record.sop_uid) == record.sha256:
                    del self._pending[record.sop_uid]

    def enqueue(self, session: ReceiveSession, records: Sequence[InstanceRecord]) -> None:
        """Queue stored, journalled instances for the next catalog batch."""
        with self._changed:
            if self._closing:
                raise StoreError("the node is shutting down; the instances stay journalled")
            session.uncommitted += len(records)
            self._queue += [(session, record) for record in records]
            self._changed.notify_all()

    def wait_committed(self, session: ReceiveSession) -> None:
        """Block until every instance ``session`` queued is catalogued (or failed to be)."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: session.uncommitted == 0)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Catalogue what is queued, then stop the committer."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        self.cleaners.close()
        if self._group_sync is not None:
            self._group_sync.close()

    def _commit_loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._closing)
                self._changed.wait_for(self._batch_due, COMMIT_DELAY_S)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            error = self._commit(batch)
            with self._changed:
                for session, record in batch:
                    if self._pending.get(record.sop_uid) == record.sha256:
                        del self._pending[record.sop_uid]
                    session.uncommitted -= 1
                    if error is not None:
                        session.error = error
                self._changed.notify_all()

    def _batch_due(self) -> bool:
        """Whether to write now rather than wait for more (called holding the condition)."""
        return self._closing or self._waiting > 0 or len(self._queue) >= COMMIT_RECORDS

    def _commit(self, batch: list[tuple[ReceiveSession, InstanceRecord]]) -> BaseException | None:
        groups: dict[str, list[tuple[ReceiveSession, InstanceRecord]]] = defaultdict(list)
        for session, record in batch:
            groups[session.collection_id].append((session, record))
        try:
            if self._group_sync is not None:  # no catalog row before its blob is durable
                self._group_sync.flush()
            with self._writer() as con:
                for collection_id, items in groups.items():
                    outcome = write_batch(con, collection_id, [r for _, r in items])
                    _account(items, outcome.already_present, outcome.conflicts)
        except (duckdb.Error, OncofedError, OSError) as exc:
            log.exception("cannot catalogue %d received instances", len(batch))
            return exc
        return None

    def recover(self) -> list[IngestReport]:
        """Catalogue the instances journalled before a crash; one report per journal."""
        reports = []
        for path, entries in pending(self.journal_dir):
            report = IngestReport(
                collection=entries[0].collection_id if entries else "", stage=RECOVERED_STAGE
            )
            report.files_seen = len(entries)
            by_collection: dict[str, list[InstanceRecord]] = defaultdict(list)
            for entry in entries:
                record = self._reread(entry, report)
                if record is not None:
                    by_collection[entry.collection_id].append(record)
            # a killed process may have left blobs unsynced (ingest_fsync = "batch")
            self.store.sync([r.sha256 for records in by_collection.values() for r in records])
            with self._writer() as con:
                for collection_id, records in by_collection.items():
                    outcome = write_batch(con, collection_id, records)
                    report.added += outcome.added
                    report.bytes_added += outcome.bytes_added
                    report.already_present += len(outcome.already_present)
                    report.conflicts += [
                        Skipped(r.sop_uid, CONFLICT_REASON) for r in outcome.conflicts
                    ]
            report.finished_at = datetime.now(UTC).isoformat()
            path.unlink()
            if entries:
                reports.append(report)
        return reports

    def _reread(self, entry: Staged, report: IngestReport) -> InstanceRecord | None:
        try:
            data = self.store.get(entry.digest)
            if sha256_hex(data) != entry.digest:  # cut short by a power loss before its sync
                raise StoreError(f"blob {entry.digest} is damaged")
            return parse_instance(data, entry.digest)
        except (StoreError, IngestError) as exc:
            report.failed.append(Skipped(entry.source, f"not recovered: {exc}"))
            return None


def _account(
    items: list[tuple[ReceiveSession, InstanceRecord]],
    present: list[InstanceRecord],
    conflicts: list[InstanceRecord],
) -> None:
    """Credit each session with what the batch did to its instances."""
    present_ids = {id(r) for r in present}
    conflict_ids = {id(r) for r in conflicts}
    for session, record in items:
        if id(record) in conflict_ids:
            session.report.conflicts.append(Skipped(record.sop_uid, CONFLICT_REASON))
        elif id(record) in present_ids:
            session.report.already_present += 1
        else:
            session.report.added += 1
            session.report.bytes_added += record.size
