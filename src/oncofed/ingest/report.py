"""The ingest report: what a run added, skipped and refused, written as JSON next to the node."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from oncofed.storage.atomic import write_atomic


@dataclass(frozen=True)
class Skipped:
    """An input that was not stored, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """Totals and per-file problems of one ingest run."""

    collection: str
    stage: str
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    files_seen: int = 0
    added: int = 0
    bytes_added: int = 0
    already_present: int = 0
    failed: list[Skipped] = field(default_factory=list)
    conflicts: list[Skipped] = field(default_factory=list)

    @property
    def nothing_new(self) -> bool:
        """True when the run found only instances the catalog already had."""
        return self.added == 0 and self.already_present > 0

    def summary(self) -> str:
        """One line for humans."""
        text = (
            f"{self.files_seen} files: {self.added} added ({self.bytes_added / 1e6:.1f} MB), "
            f"{self.already_present} already present, {len(self.failed)} failed, "
            f"{len(self.conflicts)} conflicting"
        )
        if self.nothing_new:
            text += " — nothing new: every instance was already in the catalog"
        return text

    def save(self, folder: Path) -> Path:
        """Write the report atomically as ``ingest-<time>.json`` in ``folder``."""
        stamp = (self.finished_at or self.started_at).replace(":", "").replace("+0000", "Z")
        target = folder / f"ingest-{stamp}-{os.getpid()}.json"
        return write_atomic(target, json.dumps(asdict(self), indent=2))
