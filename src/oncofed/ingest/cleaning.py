"""De-identifying received payloads, in this process or in worker processes.

A payload becomes a :class:`Cleaned` instance (de-identified bytes and their catalog record) or a
:class:`~oncofed.ingest.pipeline.Failure` naming why not. :class:`CleanerPool` spreads the
instances of a large request (STOW-RS) over worker processes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import BrokenExecutor, CancelledError, Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from oncofed.catalog.records import InstanceRecord
from oncofed.closing import Closing
from oncofed.errors import IngestError
from oncofed.ingest.parse import parse_instance, record_of
from oncofed.ingest.pipeline import Failure
from oncofed.ingest.stages import DeidentifyStage
from oncofed.storage.blobstore import sha256_hex

log = logging.getLogger(__name__)

POOL_PAYLOADS = 16
POOL_BYTES = 32 << 20
"""Requests of at least ``POOL_PAYLOADS`` instances and at most ``POOL_BYTES`` are
de-identified in worker processes (see :class:`CleanerPool`)."""
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class Cleaned:
    """A payload de-identified and parsed, not yet stored."""

    source: str
    data: bytes
    record: InstanceRecord


def clean_payloads(
    stage: DeidentifyStage, payloads: Sequence[tuple[str, bytes]]
) -> list[Cleaned | Failure]:
    """De-identify and parse payloads (here or in a worker process: it never raises)."""
    return [_clean(stage, source, raw) for source, raw in payloads]


def _clean(stage: DeidentifyStage, source: str, raw: bytes) -> Cleaned | Failure:
    """De-identify and parse one payload."""
    if not raw:
        return Failure(source, "empty file")
    try:
        clean, dataset = stage.clean(raw, source)
        digest = sha256_hex(clean)
        if dataset is None:
            return Cleaned(source, clean, parse_instance(clean, digest))
        return Cleaned(source, clean, record_of(dataset, digest, len(clean)))
    except IngestError as exc:
        return Failure(source, exc.message)


class CleanerPool(Closing):
    """Worker processes that de-identify the instances of large requests (STOW-RS).

    De-identification is CPU work under the interpreter lock: a request's instances spread
    over ``workers`` processes take ~half the time on two cores. The processes start (~1-2 s:
    they import pydicom and the catalog code) with the first request that could use them; until
    they are up, requests are de-identified in this process as before. Small requests (one
    C-STORE) and large instances (whose bytes would cross a pipe twice) stay here.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._warming: list[Future[int]] = []
        self._lock = threading.Lock()

    def clean(
        self, stage: DeidentifyStage, payloads: Sequence[tuple[str, bytes]]
    ) -> Iterator[Cleaned | Failure]:
        """The payloads de-identified, in order (in workers when worth it and ready)."""
        pool = self._ready() if self._worth_it(payloads) else None
        if pool is None:
            yield from clean_payloads(stage, payloads)
            return
        size = -(-len(payloads) // (self.workers * 2))
        chunks = [payloads[i : i + size] for i in range(0, len(payloads), size)]
        futures: list[Future[list[Cleaned | Failure]] | None]
        try:
            futures = [pool.submit(clean_payloads, stage, chunk) for chunk in chunks]
        except BrokenExecutor:
            futures = [None] * len(chunks)
        for future, chunk in zip(futures, chunks, strict=True):
            yield from self._result(future, stage, chunk)

    def _result(
        self,
        future: Future[list[Cleaned | Failure]] | None,
        stage: DeidentifyStage,
        chunk: Sequence[tuple[str, bytes]],
    ) -> list[Cleaned | Failure]:
        """A worker's answer; where the workers stopped (one was killed), this process's."""
        if future is not None:
            try:
                return future.result()
            except (BrokenExecutor, CancelledError):
                self.close()
        return clean_payloads(stage, chunk)

    def start(self) -> None:
        """Start the worker processes now rather than with the first large request."""
        if self.workers > 1:
            self._ready()

    def _worth_it(self, payloads: Sequence[tuple[str, bytes]]) -> bool:
        total = sum(len(raw) for _, raw in payloads)
        return self.workers > 1 and len(payloads) >= POOL_PAYLOADS and total <= POOL_BYTES

    def _ready(self) -> ProcessPoolExecutor | None:
        """The pool once its processes are up; starts them on the first call."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=get_context("spawn"),
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
                self._warming = [self._pool.submit(os.getpid) for _ in range(self.workers)]
            if not all(future.done() for future in self._warming):
                return None
            if any(future.exception() is not None for future in self._warming):
                self._pool.shutdown(cancel_futures=True)  # cannot start: try again later
                self._pool = None
                return None
            return self._pool

    def close(self) -> None:
        """Stop the workers (a later large request starts them again)."""
        with self._lock:
            if self._pool is not None:
                log.info("stopping the de-identification workers")
                self._pool.shutdown(cancel_futures=True)
                self._pool = None


def _exit_with_parent(parent: int) -> None:
    """In a worker: end when the server process is gone (killed: nothing else would end it,
    since the other workers keep the task queue open)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
