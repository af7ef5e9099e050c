"""The ingest pipeline: discover → read → de-identify → parse → store blob → write catalog.

Reading, de-identification, parsing and blob writes run in worker processes (in this process
for small runs); the catalog is written by the calling process in batches, each batch one
transaction, after its blobs are durable. A file that fails any stage is listed in the report
and the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import duckdb
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from oncofed.catalog.records import InstanceRecord
from oncofed.catalog.writer import write_batch
from oncofed.errors import IngestError, StoreError
from oncofed.ingest.parse import parse_instance
from oncofed.ingest.report import IngestReport, Skipped
from oncofed.ingest.stages import DeidentifyStage
from oncofed.storage.blobstore import BlobStore, SourceChangedError, sha256_hex

log = logging.getLogger(__name__)

CHUNK_FILES = 64
CHUNK_BYTES = 32 << 20
BATCH_RECORDS = 2000
IN_PROCESS_FILES = 200
"""Runs with fewer files are ingested in this process: each worker process spends 1-3 s
importing pydicom, DuckDB and pyarrow, longer than ~200 small files take here."""
KERNEL_COPY_BYTES = 1 << 20
"""Unchanged inputs at least this big are copied into the store in the kernel; smaller ones
are written from memory (the copy's extra open, re-read and hash cost more than it saves)."""


@dataclass(frozen=True)
class Failure:
    """A file that did not make it through the worker stages."""

    path: str
    reason: str


@dataclass(frozen=True)
class StoreFailure(Failure):
    """The store could not take a file (disk full, permissions): the run must stop."""


Outcome = InstanceRecord | Failure


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under ``paths`` (recursively, sorted, hidden files included)."""
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(folder) / name
        else:
            raise IngestError(f"no such file or folder: {path}")


def process_file(path: str, store: BlobStore, stage: DeidentifyStage) -> Outcome:
    """Run one file through read → de-identify → parse → store; never raises."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return Failure(path, f"cannot read: {exc.strerror or exc}")
    return process_bytes(raw, path, store, stage, copy_from=Path(path))


def process_bytes(
    raw: bytes,
    source: str,
    store: BlobStore,
    stage: DeidentifyStage,
    *,
    copy_from: Path | None = None,
) -> Outcome:
    """Run received bytes (named ``source`` in reports) through de-identify → parse → store.

    When the stage stores the input unchanged and it came from the file ``copy_from``, a big
    blob is copied from that file instead of written from memory (much faster for big files).
    """
    if not raw:
        return Failure(source, "empty file")
    try:
        clean = stage.apply(raw, source)
        digest = sha256_hex(clean)
        record = parse_instance(clean, digest)
    except IngestError as exc:
        return Failure(source, exc.message)
    try:
        if copy_from is not None and clean is raw and len(raw) >= KERNEL_COPY_BYTES:
            store.put_copy(copy_from, digest)
        else:
            store.put(clean, digest)
    except SourceChangedError as exc:
        return Failure(source, exc.message)
    except StoreError as exc:  # the store, not the input, is at fault: the run stops
        return StoreFailure(source, exc.message)
    return record


def process_chunk(paths: Sequence[str], store_root: str, stage: DeidentifyStage) -> list[Outcome]:
    """Worker entry point: process a chunk of files."""
    store = BlobStore(Path(store_root))
    outcomes: list[Outcome] = []
    for path in paths:
        outcomes.append(process_file(path, store, stage))
        if isinstance(outcomes[-1], StoreFailure):
            break
    return outcomes


def _chunks(files: Iterable[Path]) -> Iterator[list[str]]:
    """Groups of at most CHUNK_FILES files or about CHUNK_BYTES, whichever comes first."""
    chunk: list[str] = []
    size = 0
    for path in files:
        chunk.append(str(path))
        size += _size(path)
        if len(chunk) == CHUNK_FILES or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reported when the worker reads it


class Ingestor:
    """Runs one ingest into a catalog connection and a blob store."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        store: BlobStore,
        stage: DeidentifyStage,
        *,
        workers: int = 0,
        show_progress: bool | None = None,
    ) -> None:
        self.con = con
        self.store = store
        self.stage = stage
        self.workers = workers or os.cpu_count() or 1
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
        store.create()

    def run(self, paths: Sequence[Path], collection_id: str) -> IngestReport:
        """Ingest every file under ``paths`` into ``collection_id``; return the report."""
        files = list(discover(paths))
        return self._consume(self._outcomes(files), len(files), collection_id)

    def _consume(
        self, batches: Iterator[list[Outcome]], total: int, collection_id: str
    ) -> IngestReport:
        report = IngestReport(collection=collection_id, stage=self.stage.name)
        report.files_seen = total
        pending: list[InstanceRecord] = []
        with self._progress(total) as advance:
            try:
                for outcomes in batches:
                    for outcome in outcomes:
                        if isinstance(outcome, StoreFailure):
                            raise StoreError(f"cannot store {outcome.path}: {outcome.reason}")
                        if isinstance(outcome, Failure):
                            report.failed.append(Skipped(outcome.path, outcome.reason))
                        else:
                            pending.append(outcome)
                    advance(len(outcomes))
                    if len(pending) >= BATCH_RECORDS:
                        batch, pending = pending, []
                        self._flush(collection_id, batch, report)
            finally:  # keep what is stored even when the store fails mid-run
                self._flush(collection_id, pending, report)
        report.finished_at = datetime.now(UTC).isoformat()
        return report

    def _outcomes(self, files: Sequence[Path]) -> Iterator[list[Outcome]]:
        chunks = list(_chunks(files))
        if self.workers == 1 or len(chunks) == 1 or len(files) < IN_PROCESS_FILES:
            for chunk in chunks:
                yield process_chunk(chunk, str(self.store.root), self.stage)
            return
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            in_flight: set[Future[list[Outcome]]] = set()
            for chunk in chunks:
                in_flight.add(pool.submit(process_chunk, chunk, str(self.store.root), self.stage))
                if len(in_flight) >= self.workers * 4:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            for future in in_flight:
                yield future.result()

    def _flush(
        self, collection_id: str, records: list[InstanceRecord], report: IngestReport
    ) -> None:
        outcome = write_batch(self.con, collection_id, records)
        report.added += outcome.added
        report.bytes_added += outcome.bytes_added
        report.already_present += len(outcome.already_present)
        report.conflicts.extend(
            Skipped(r.sop_uid, "SOP Instance UID already stored with different content")
            for r in outcome.conflicts
        )

    def _progress(self, total: int) -> _ProgressContext:
        return _ProgressContext(total, self.show_progress)


class _ProgressContext:
    """A rich progress bar on a terminal, periodic log lines otherwise."""

    def __init__(self, total: int, interactive: bool) -> None:
        self.total = total
        self.done = 0
        self.progress = (
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            if interactive
            else None
        )

    def __enter__(self) -> Callable[[int], None]:
        if self.progress is None:
            return self._log
        self.progress.start()
        task = self.progress.add_task("ingest", total=self.total)
        progress = self.progress
        return lambda n: progress.advance(task, n)

    def _log(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.done // 5000 > before // 5000 or self.done == self.total:
            log.info("ingest: %d/%d files", self.done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
