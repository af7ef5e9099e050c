"""The per-run de-identification report: files processed, actions by tag, quarantined files."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncofed.deid.annex_e_table import EDITION
from oncofed.deid.dataset import label_of

ACTION_NAMES = {
    "X": "removed",
    "Z": "emptied",
    "D": "dummy",
    "K": "kept",
    "C": "cleaned",
    "U": "uid-replaced",
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class RunReport:
    """Counts for one run; ``to_dict`` is the JSON written next to the output."""

    profile: str
    options: tuple[str, ...]
    started: str = field(default_factory=_now)
    finished: str = ""
    processed: int = 0
    written: int = 0
    pixels_cleaned: int = 0
    quarantined: list[dict[str, str]] = field(default_factory=list)
    actions: Counter[tuple[int, str]] = field(default_factory=Counter)

    def written_one(self, actions: Counter[tuple[int, str]], pixels_masked: float) -> None:
        """Count one file that was de-identified and written."""
        self.processed += 1
        self.written += 1
        self.pixels_cleaned += pixels_masked > 0
        self.actions.update(actions)

    def quarantined_one(self, source: str, reason: str) -> None:
        """Count one file that was quarantined, with its reason."""
        self.processed += 1
        self.quarantined.append({"source": source, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data; actions as ``{tag label: {action: count}}``."""
        by_tag: dict[str, dict[str, int]] = {}
        for (tag, action), count in sorted(self.actions.items()):
            by_tag.setdefault(label_of(tag), {})[ACTION_NAMES[action]] = count
        return {
            "standard": f"DICOM PS3.15 {EDITION} Annex E",
            "profile": self.profile,
            "options": list(self.options),
            "started": self.started,
            "finished": self.finished or _now(),
            "files_processed": self.processed,
            "files_written": self.written,
            "files_with_pixels_cleaned": self.pixels_cleaned,
            "files_quarantined": len(self.quarantined),
            "quarantined": self.quarantined,
            "actions_by_tag": by_tag,
        }

    def write(self, path: Path) -> None:
        """Write the report as JSON atomically (temp file, fsync, rename)."""
        self.finished = _now()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8"
        ) as handle:
            json.dump(self.to_dict(), handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.processed} processed, {self.written} written, "
            f"{len(self.quarantined)} quarantined, {self.pixels_cleaned} with pixels cleaned"
        )
