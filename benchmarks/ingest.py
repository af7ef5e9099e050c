"""Ingest throughput: oncofed vs `cp -r` of the same tree vs a plain pydicom read loop.

Goals (issue 3): at least 1,000 small files/s on 2 cores, and at least half of cp's MB/s on
large files. oncofed is measured twice: on a collection declared already de-identified (the
ingest machinery alone: read, hash, check, parse, fsynced blob write, catalog) and with the
node's de-identification (the default for hospital data), which does much more per file.
All peers read the same files, which are read once beforehand so every peer starts warm (the
page cache cannot be dropped without root). ``--profile`` adds a cProfile of a one-worker ingest
of small files and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, console, machine, print_table

from oncofed.node import Node
from oncofed.testing.dicom import generate_large, generate_many_small


def dataset(folder: Path, make: Callable[[Path], object]) -> tuple[list[Path], int]:
    """The files of a cached generated tree (generated on first use) and their total size."""
    if not folder.is_dir():
        make(folder)
    files = sorted(p for p in folder.rglob("*.dcm") if p.is_file())
    return files, sum(p.stat().st_size for p in files)


def warm(files: list[Path]) -> None:
    for path in files:
        path.read_bytes()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cp(source: Path, *, sync: bool) -> float:
    with tempfile.TemporaryDirectory(dir=OUT) as target:
        command = ["cp", "-r", str(source), str(Path(target) / "copy")]

        def run() -> None:
            subprocess.run(command, check=True)
            if sync:
                os.sync()

        return timed(run)


def pydicom_loop(files: list[Path]) -> float:
    return timed(lambda: [pydicom.dcmread(p, stop_before_pixels=True) for p in files])


def oncofed(source: Path, *, workers: int, deidentify: bool) -> float:
    with tempfile.TemporaryDirectory(dir=OUT) as home:
        node = Node.init(Path(home) / "node")
        try:
            return timed(
                lambda: node.ingest(
                    [source],
                    "bench",
                    already_deidentified=not deidentify,
                    workers=workers,
                    show_progress=False,
                )
            )
        finally:
            node.close()


def measure(source: Path, files: list[Path], cores: int) -> dict[str, float]:
    """Seconds per run, every peer on the same warm tree."""
    warm(files)
    return {
        "cp -r": cp(source, sync=False),
        "cp -r + sync": cp(source, sync=True),
        "pydicom read loop (1 process)": pydicom_loop(files),
        OURS: oncofed(source, workers=cores, deidentify=False),
        "oncofed ingest, declared de-identified (1 worker)": oncofed(
            source, workers=1, deidentify=False
        ),
        "oncofed ingest with de-identification (all cores)": oncofed(
            source, workers=cores, deidentify=True
        ),
    }


def rows(name: str, runs: dict[str, float], count: int, size: int) -> list[list[object]]:
    """files/s, MB/s and throughput relative to ``cp -r`` and ``cp -r`` + ``sync``."""
    return [
        [
            f"{name}: {label}",
            count / seconds,
            size / seconds / 1e6,
            runs["cp -r"] / seconds,
            runs["cp -r + sync"] / seconds,
        ]
        for label, seconds in runs.items()
    ]


def profile(files: list[Path], top: int) -> None:
    """cProfile a one-worker ingest of ``files`` (declared de-identified) into a fresh node."""
    with tempfile.TemporaryDirectory(dir=OUT) as home:
        node = Node.init(Path(home) / "node")
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            node.ingest(files, "bench", already_deidentified=True, workers=1, show_progress=False)
            profiler.disable()
        finally:
            node.close()
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        console.print(
            f"[bold]profile of a 1-worker ingest of {len(files):,} small files, by {order}"
        )
        console.print(text.getvalue().split("\n\n", 1)[-1].strip(), markup=False, highlight=False)


OURS = "oncofed ingest, declared de-identified (all cores)"


def main() -> None:
    """Generate (or reuse) the trees, measure every peer, print the table and the goals."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20_000, help="small files to ingest")
    parser.add_argument("--large", type=int, default=8, help="large (~31 MB) files to ingest")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also cProfile a 1-worker ingest of the first N small files (0: no profile)",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed per order")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    cores = os.cpu_count() or 1
    small_dir = OUT / f"ingest-small-{args.small}"
    large_dir = OUT / f"ingest-large-{args.large}"
    small, small_bytes = dataset(small_dir, lambda d: generate_many_small(d, args.small, seed=1))
    large, large_bytes = dataset(large_dir, lambda d: generate_large(d, args.large, seed=2))
    console.print(
        f"{len(small):,} small files ({small_bytes / 1e6:,.0f} MB), {len(large)} large files "
        f"({large_bytes / 1e6:,.0f} MB); inputs read once before timing ({machine()})"
    )
    small_runs = measure(small_dir, small, cores)
    large_runs = measure(large_dir, large, cores)
    table = rows("small", small_runs, len(small), small_bytes)
    table += rows("large", large_runs, len(large), large_bytes)
    print_table(
        f"ingest throughput ({machine()})",
        ["run", "files/s", "MB/s", "÷ cp -r", "÷ cp -r + sync"],
        table,
    )
    files_per_s = len(small) / small_runs[OURS]
    vs_cp = large_runs["cp -r + sync"] / large_runs[OURS]
    vs_plain_cp = large_runs["cp -r"] / large_runs[OURS]
    console.print(
        f"goal 1, >= 1,000 small files/s on {cores} cores: {files_per_s:,.0f} files/s = "
        f"{files_per_s / 1000:.2f}x goal ({'met' if files_per_s >= 1000 else 'not met'});"
        f" goal 2, >= 0.5x cp's MB/s on large files: {vs_cp:.2f}x cp -r + sync"
        f" ({'met' if vs_cp >= 0.5 else 'not met'}), {vs_plain_cp:.2f}x cp -r without sync"
    )
    if args.profile:
        profile(small[: args.profile], args.profile_top)
    shutil.rmtree(OUT / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
