"""One node shared by the server's request handlers and network receivers.

DuckDB allows one writer process, so the server process owns the node: HTTP handlers, STOW-RS
and the DICOM SCP reach the catalog only through this object, which serialises access with a
lock (DuckDB connections are not safe to share between threads without one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.writer import CollectionSpec
from oncofed.closing import Closing
from oncofed.ingest.pipeline import Ingestor, PayloadResult
from oncofed.node import Node

RECEIVED_COLLECTION = "received"


class NodeService(Closing):
    """Thread-safe access to an open node."""

    def __init__(self, node: Node, *, receive_collection: str = RECEIVED_COLLECTION) -> None:
        self.node = node
        self.receive_collection = receive_collection
        self._lock = threading.RLock()

    @classmethod
    def open(cls, home: Path | str) -> NodeService:
        """Open the node at ``home`` for serving."""
        return cls(Node(home))

    def close(self) -> None:
        """Close the node."""
        with self._lock:
            self.node.close()

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        """The catalog, held exclusively for the duration of the ``with`` block."""
        with self._lock:
            yield self.node.catalog

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The catalog's DuckDB connection, held exclusively."""
        with self._lock:
            yield self.node.catalog.con

    def audit(
        self, actor: str, action: str, target: str, details: dict[str, object] | None = None
    ) -> None:
        """Append to the node's audit log."""
        with self._lock:
            self.node.audit.append(actor, action, target, details)

    def blob_path(self, sha256: str) -> Path:
        """Where a stored blob lives (blobs are immutable: no lock needed to read them)."""
        return self.node.store.path_for(sha256)

    def receive(
        self,
        payloads: Sequence[tuple[str, bytes]],
        collection: str | None = None,
        *,
        actor: str = "network",
    ) -> PayloadResult:
        """Ingest objects received over the network through the node's de-identification;
        the result says what became of each payload (its stored, de-identified UIDs)."""
        collection_id = collection or self.receive_collection
        with self._lock:
            spec = CollectionSpec(collection_id, collection_id)
            stage = self.node.stage_for(spec)
            self.node.ensure_collection(spec)
            ingestor = Ingestor(self.node.catalog.con, self.node.store, stage, workers=1)
            result = ingestor.run_payloads(payloads, collection_id)
            self.node.record_ingest(result.report, actor)
            return result
