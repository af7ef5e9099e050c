"""Compare oncofed's de-identification with peers on the same planted-PHI corpus.

Peers: dicognito, pydicom's ``deid`` and dicom-anonymizer, each in its default configuration
(``pip install dicognito deid dicom-anonymizer``; peers not installed are skipped). For each tool:
identifying values leaked (planted values found in output bytes, in ASCII/Latin-1/UTF-8/UTF-16 or
ISO 2022; burned-in text left in pixels), files broken (unreadable, or UIDs that no longer match
across files of a study) and files/s on one process (read + de-identify + write).

    python benchmarks/deid_peers.py [--patients 20] [--seed 0] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from oncofed.deid.corpus import SAFE_PRIVATE, Corpus, Planted, generate_corpus
from oncofed.deid.profile import DEFAULT_OPTIONS
from oncofed.deid.stage import make_stage
from oncofed.errors import QuarantineError

Tool = Callable[[list[Path], Path], dict[Path, Path]]


def _oncofed(files: list[Path], out: Path) -> dict[Path, Path]:
    stage = make_stage(os.urandom(32), (*DEFAULT_OPTIONS, "retain-safe-private"), SAFE_PRIVATE)
    done = {}
    for i, path in enumerate(files):
        try:
            data = stage.apply(path.read_bytes(), str(path))
        except QuarantineError:
            continue
        (out / f"{i}.dcm").write_bytes(data)  # like the peers: no fsync (the CLI does fsync)
        done[path] = out / f"{i}.dcm"
    return done


def _dicognito(files: list[Path], out: Path) -> dict[Path, Path]:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()
    done = {}
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        anonymizer.anonymize(ds)
        ds.save_as(out / f"{i}.dcm")
        done[path] = out / f"{i}.dcm"
    return done


def _dicom_anonymizer(files: list[Path], out: Path) -> dict[Path, Path]:
    from dicomanonymizer import anonymize_dicom_file

    done = {}
    for i, path in enumerate(files):
        anonymize_dicom_file(str(path), str(out / f"{i}.dcm"))
        done[path] = out / f"{i}.dcm"
    return done


def _deid(files: list[Path], out: Path) -> dict[Path, Path]:
    from deid.dicom import replace_identifiers

    staged = {}
    for i, path in enumerate(files):  # deid names outputs by input basename: make those unique
        target = out / "in" / f"{i}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        staged[path] = target
    start = time.perf_counter()
    replace_identifiers(
        dicom_files=[str(p) for p in staged.values()],
        save=True,
        output_folder=str(out),
        overwrite=True,
        remove_private=True,
    )
    _deid.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
    return {source: out / staged_path.name for source, staged_path in staged.items()}


TOOLS: dict[str, tuple[str, Tool]] = {
    "oncofed": ("oncofed", _oncofed),
    "dicognito": ("dicognito", _dicognito),
    "deid (pydicom)": ("deid", _deid),
    "dicom-anonymizer": ("dicom-anonymizer", _dicom_anonymizer),
}


def _patterns(value: str) -> list[bytes]:
    found = []
    for variant in {value, value.upper(), value.lower()}:
        for encoding in ("latin-1", "utf-8", "utf-16-le", "utf-16-be", "iso2022_jp"):
            try:
                found.append(variant.encode(encoding))
            except UnicodeEncodeError:
                continue
    return found


def _leaks(planted: Planted, data: bytes, ds: Dataset | None) -> int:
    count = sum(any(p in data for p in _patterns(value)) for value in planted.values)
    if planted.burned_box is not None and ds is not None:
        y0, y1, x0, x1 = planted.burned_box
        try:
            count += int((ds.pixel_array[y0:y1, x0:x1] == 255).any())
        except Exception:
            count += 1
    return count


def _references_broken(corpus: Corpus, read: dict[Path, Dataset]) -> int:
    """Count files whose study/series/frame/SOP references no longer match the other files."""
    broken = 0
    folders: dict[Path, list[Planted]] = {}
    for planted in corpus.files:
        folders.setdefault(planted.path.parent, []).append(planted)
    for members in folders.values():
        datasets = [read[p.path] for p in members if p.path in read]
        images = [ds for ds in datasets if ds.get("Modality") in ("CT", "MR")]
        sops = {str(ds.get("SOPInstanceUID", "")) for ds in images}
        studies = {str(ds.get("StudyInstanceUID", "")) for ds in datasets}
        frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in images}
        for ds in datasets:
            bad = len(studies) != 1 or len(frames) > 1
            for item in ds.get("ReferencedImageSequence") or []:
                bad |= str(item.get("ReferencedSOPInstanceUID", "")) not in sops
            for study in ds.get("CurrentRequestedProcedureEvidenceSequence") or []:
                bad |= str(study.get("StudyInstanceUID", "")) not in studies
                for series in study.get("ReferencedSeriesSequence") or []:
                    for item in series.get("ReferencedSOPSequence") or []:
                        bad |= str(item.get("ReferencedSOPInstanceUID", "")) not in sops
            broken += bad
    return broken


def measure(name: str, tool: Tool, corpus: Corpus, work: Path) -> dict[str, object]:
    """Run one tool on the corpus and score its outputs."""
    out = work / name.split()[0]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = [p.path for p in corpus.files]
    start = time.perf_counter()
    done = tool(files, out)
    elapsed = getattr(tool, "elapsed", time.perf_counter() - start)
    leaked = unreadable = 0
    read: dict[Path, Dataset] = {}
    for planted in corpus.files:
        target = done.get(planted.path)
        if target is None or not target.exists():
            if name != "oncofed":
                unreadable += 1
            continue
        data = target.read_bytes()
        try:
            ds = pydicom.dcmread(target)
            read[planted.path] = ds
        except Exception:
            ds = None
            unreadable += 1
        leaked += _leaks(planted, data, ds)
    return {
        "tool": name,
        "leaked": leaked,
        "broken": unreadable + _references_broken(corpus, read),
        "withheld": len(files) - len(done),
        "files_per_s": len(files) / elapsed,
    }


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def main() -> None:
    """Generate the corpus, run every installed tool, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--runs", type=int, default=1, help="timed rounds, tools in rotating order; range shown"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = generate_corpus(work / "corpus", patients=args.patients, seed=args.seed)
        values = sum(len(p.values) + (p.burned_box is not None) for p in corpus.files)
        print(f"corpus: {len(corpus.files)} files, {values} planted values (seed {args.seed})")
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, pydicom {_version('pydicom')}, "
            f"{args.runs} run(s) per tool"
        )
        print()
        installed = {name: entry for name, entry in TOOLS.items() if _version(entry[0])}
        rows: dict[str, dict[str, object]] = {}
        speeds: dict[str, list[float]] = {name: [] for name in installed}
        names = list(installed)
        for run in range(args.runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                row = measure(name, installed[name][1], corpus, work)
                rows.setdefault(name, row)
                speeds[name].append(float(row["files_per_s"]))  # type: ignore[arg-type]
        print("| tool | version | values leaked | files broken | files withheld | files/s |")
        print("|---|---|---:|---:|---:|---:|")
        for name, (dist, _tool) in TOOLS.items():
            if name not in rows:
                print(f"| {name} | not installed | | | | |")
                continue
            row, low, high = rows[name], min(speeds[name]), max(speeds[name])
            rate = f"{low:.0f}" if args.runs == 1 else f"{low:.0f}-{high:.0f}"
            print(
                f"| {name} | {_version(dist)} | {row['leaked']} | {row['broken']} | "
                f"{row['withheld']} | {rate} |"
            )


if __name__ == "__main__":
    main()
