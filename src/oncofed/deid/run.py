"""De-identify a folder tree into another: the standalone tool behind ``oncofed deid IN OUT``.

Output files are named from the new UIDs (``<study>/<series>/<sop>.dcm``), never from input paths,
which often hold names. Each file is written atomically, so a crash leaves nothing half-written.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from oncofed.deid.report import RunReport
from oncofed.deid.stage import DeidStage
from oncofed.errors import QuarantineError
from oncofed.storage.atomic import write_atomic


@dataclass(frozen=True)
class FileResult:
    """The outcome of one input file, small enough to return from a worker process."""

    source: str
    reason: str = ""
    actions: Counter[tuple[int, str]] | None = None
    pixels_masked: float = 0.0


def process_file(stage: DeidStage, source: Path, output: Path) -> FileResult:
    """De-identify one file into ``output``; quarantines come back as a reason, not an error."""
    try:
        raw = source.read_bytes()
    except OSError as exc:
        return FileResult(str(source), reason=f"{source}: cannot be read ({exc.strerror})")
    try:
        outcome = stage.process(raw, str(source))
    except QuarantineError as exc:
        return FileResult(str(source), reason=exc.message)
    target = output / outcome.study_instance_uid / outcome.series_instance_uid
    write_atomic(target / f"{outcome.sop_instance_uid}.dcm", outcome.data)
    return FileResult(str(source), actions=outcome.actions, pixels_masked=outcome.pixels_masked)


def input_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def deidentify_tree(
    stage: DeidStage,
    source: Path,
    output: Path,
    workers: int = 1,
    progress: Callable[[FileResult], None] | None = None,
) -> RunReport:
    """De-identify every file under ``source`` into ``output``; return the run report."""
    report = RunReport(profile="basic", options=stage.profile.options)
    files = list(input_files(source))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            chunk = max(1, len(files) // (workers * 8))
            results = pool.map(
                process_file, [stage] * len(files), files, [output] * len(files), chunksize=chunk
            )
            for result in results:
                _count(report, result, progress)
    else:
        for path in files:
            _count(report, process_file(stage, path, output), progress)
    return report


def _count(
    report: RunReport, result: FileResult, progress: Callable[[FileResult], None] | None
) -> None:
    if result.actions is None:
        report.quarantined_one(result.source, result.reason)
    else:
        report.written_one(result.actions, result.pixels_masked)
    if progress is not None:
        progress(result)
