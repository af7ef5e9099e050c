"""The staging journal: instances acknowledged to a sender but not yet in the catalog.

A network receiver stores each instance's blob (fsynced), appends a line naming it to its
journal file, then acknowledges it; the catalog rows follow in a batch shortly after, and the
journal file is removed once every instance it names is catalogued. A process killed in
between leaves the journal behind, and :func:`pending` hands its entries back to be
catalogued when the node is next served.

Lines are appended with one ``write`` per call (no fsync of their own): the kernel keeps them
through a crash of the process, and the file system writes them out with its next commit (ext4:
within 5 s), as it does the blob's directory entry.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from oncofed.closing import Closing

SUFFIX = ".journal"


@dataclass(frozen=True)
class Staged:
    """One acknowledged instance: its blob, the collection it goes to, how it arrived."""

    digest: str
    collection_id: str
    source: str


class Journal(Closing):
    """One append-only journal file (one per association or request)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{uuid.uuid4().hex}{SUFFIX}"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._lock = threading.Lock()

    def append(self, entries: Sequence[Staged]) -> None:
        """Add one line per entry (a single ``write``, so lines never interleave)."""
        lines = "".join(json.dumps([e.digest, e.collection_id, e.source]) + "\n" for e in entries)
        with self._lock:
            os.write(self._fd, lines.encode("utf-8"))

    def close(self) -> None:
        """Close the file (it stays until :meth:`remove`)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def remove(self) -> None:
        """Close and delete the file: everything it names is catalogued."""
        self.close()
        self.path.unlink(missing_ok=True)


def pending(folder: Path) -> Iterator[tuple[Path, list[Staged]]]:
    """Each journal left in ``folder`` with its entries (a torn last line is skipped: its
    instance was never acknowledged)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        entries: list[Staged] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                digest, collection_id, source = json.loads(line)
            except (ValueError, TypeError):
                continue
            entries.append(Staged(str(digest), str(collection_id), str(source)))
        yield path, entries
