"""The staging journal: instances acknowledged to a sender but not yet in the catalog.

A network receiver stores each instance's blob (fsynced), appends a line naming it to its
journal file, then acknowledges it; the catalog rows follow in a batch shortly after, and the
journal file is removed once every instance it names is catalogued. A process killed in
between leaves the journal behind, and :func:`pending` hands its entries back to be
catalogued when the node is next served.

The line is appended with one ``write`` (no fsync of its own): the kernel keeps it through a
crash of the process, and the file system writes it out with its next commit (ext4: within
5 s), as it does the blob's directory entry.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
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

    def append(self, staged: Staged) -> None:
        """Add one line (a single ``write``, so lines never interleave)."""
        line = json.dumps([staged.digest, staged.collection_id, staged.source]) + "\n"
        with self._lock:
            os.write(self._fd, line.encode("utf-8"))

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
