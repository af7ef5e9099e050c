"""`oncofed demo`, site-shift part: a prostate grader trained at one site, tested at three.

Seeded synthetic biopsy slides are generated for three stain sites (a reference H&E lab, a
blue haematoxylin-heavy lab, a pale eosin-heavy lab). Two ISUP graders are trained on site A
only, one on raw colours and one with Macenko stain normalisation, exported to ONNX and packaged
as evaluation-facility algorithms. Each site's evaluation slides are stocked at one node, so the
facility's per-site report shows the plain grader drop away from home and the normalised one
recover. Every slide, label and result here is synthetic.

Each site holds 18 evaluation slides, 3 of every grade group 0-5: per-site metrics rest on at
least 10 cases and are released at the nodes' default disclosure settings (min_count 10); the
confusion-matrix aggregate the hub pools leaves a node only when every grade present has at
least min_count cases, so it needs min_count <= 3.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from rich.console import Console

from oncofed.catalog.writer import CollectionSpec
from oncofed.ingest.slides import read_sample_sheet
from oncofed.models.cli_support import LabelledFile
from oncofed.models.package import package_for_tef
from oncofed.models.prostate import pipeline
from oncofed.models.prostate.cases import files_from_sheet
from oncofed.models.training import TrainConfig, TrainHistory
from oncofed.node import Node
from oncofed.tef.algorithm import MANIFEST
from oncofed.testing.prostate import generate_prostate

COLLECTION = "prostate-biopsies"
SHEET = "sample_sheet.csv"
TAG = "synthetic site shift:"
"""Starts every printed line: the data and results are generated, not patients."""
HOME_SITE = "site-a"
SITE_SEEDS = {"site-a": 3, "site-b": 5, "site-c": 6}
SITE_SLIDES = {"site-a": 42, "site-b": 18, "site-c": 18}
"""Generated slides per site; site A's are 24 for training and 18 held out."""
HELD_OUT_PER_GRADE = 3
GRADES = 6
SETTINGS = pipeline.ProstateSettings(width=8, max_tiles=24, augment=False)
CONFIG = TrainConfig(epochs=15, batch_size=1, learning_rate=2e-3, threads=1, seed=0)
MODELS: dict[str, Literal["none", "macenko"]] = {
    "prostate-plain": "none",
    "prostate-macenko": "macenko",
}
VERSION = "1"
BENCHMARK: dict[str, Any] = {
    "id": "prostate-isup-sites",
    "version": VERSION,
    "title": "Prostate biopsy ISUP grade group across sites (synthetic)",
    "description": "Synthetic demo benchmark: generated biopsy slides from three stain sites.",
    "task": "ordinal",
    "classes": [str(grade) for grade in range(GRADES)],
    "input": {"modality": "SM", "kind": "wsi", "preprocessing": {"max_tiles": 4096}},
    "cohort": {"collection": [COLLECTION]},
    "label_kind": "isup_grade",
    "metrics": ["quadratic_kappa", "accuracy"],
    "primary_metric": "quadratic_kappa",
    "subgroups": ["site"],
    "synthetic": True,
}


@dataclass(frozen=True)
class SiteShift:
    """What the site-shift demo evaluates: a benchmark, two packages, three sites' slides."""

    benchmark: Path
    """Benchmark spec (YAML): ordinal ISUP 0-5 over collection ``prostate-biopsies``."""
    packages: dict[str, Path]
    """``prostate-plain`` and ``prostate-macenko`` TEF packages, trained on site A only."""
    sites: dict[str, Path]
    """Site -> sample sheet of its evaluation slides (``labels.csv`` beside it)."""


def prepare_site_shift(root: Path, console: Console) -> SiteShift:
    """Generate (seeded) slides for three stain sites, train both graders on site A, export and
    package; reuse everything already under root."""
    reused = all((root / site / SHEET).exists() for site in SITE_SLIDES)
    sheets = {site: _cohort(root, site) for site in SITE_SLIDES}
    sites = {**sheets, HOME_SITE: _held_out_sheet(sheets[HOME_SITE])}
    counts = ", ".join(f"{site} {n}" for site, n in SITE_SLIDES.items())
    console.print(f"{TAG} slides {'reused' if reused else 'generated'}: {counts}")
    train, held_out = _split(sheets[HOME_SITE])
    packages = {
        name: _package(root, name, stain, train, held_out, console)
        for name, stain in MODELS.items()
    }
    benchmark = root / "benchmark.yaml"
    benchmark.write_text(yaml.safe_dump(BENCHMARK, sort_keys=False), encoding="utf-8")
    return SiteShift(benchmark, packages, sites)


def stock_node(node: Node, sheet: Path) -> int:
    """Ingest the sheet's slides into collection 'prostate-biopsies' and import their ISUP
    labels (``labels.csv`` beside the sheet; a row matching no slide refuses the file); return
    how many labelled slides the collection holds. Skipped when it holds at least as many as the
    sheet lists."""
    slides = read_sample_sheet(sheet)
    if _labelled(node) < len(slides):
        node.ingest_slides(slides, CollectionSpec(COLLECTION, "Prostate biopsies (synthetic)"))
        node.import_labels(sheet.parent / "labels.csv", COLLECTION, strict=True)
    return _labelled(node)


def _labelled(node: Node) -> int:
    row = node.catalog.con.execute(
        "SELECT count(DISTINCT series_key) FROM label WHERE collection_id = ? AND kind = ?",
        [COLLECTION, "isup_grade"],
    ).fetchone()
    return int(row[0]) if row else 0


def _cohort(root: Path, site: str) -> Path:
    """The site's generated sample sheet (written last, so its presence means done)."""
    sheet = root / site / SHEET
    if not sheet.exists():
        generate_prostate(root / site, slides_per_site=SITE_SLIDES[site], sites=(site,),
                          seed=SITE_SEEDS[site])  # fmt: skip
    return sheet


def _split(sheet: Path) -> tuple[list[LabelledFile], list[LabelledFile]]:
    """Training and held-out slides: the first slides of each grade (patient order) are held
    out, so the held-out set is balanced."""
    files = sorted(files_from_sheet(sheet, sheet.parent / "labels.csv"), key=lambda f: f.patient)
    held_out = [
        file
        for grade in range(GRADES)
        for file in [f for f in files if f.target == grade][:HELD_OUT_PER_GRADE]
    ]
    return [f for f in files if f not in held_out], held_out


def _held_out_sheet(sheet: Path) -> Path:
    """Sample sheet and labels of the held-out slides in ``held-out/`` beside ``sheet``."""
    folder = sheet.parent / "held-out"
    subset = folder / SHEET
    if subset.exists():
        return subset
    keep = {f.path for f in _split(sheet)[1]}
    folder.mkdir(exist_ok=True)
    _copy_rows(sheet.parent / "labels.csv", folder / "labels.csv", "slide", keep)
    _copy_rows(sheet, subset, "path", keep)
    return subset


def _copy_rows(source: Path, target: Path, column: str, keep: set[Path]) -> None:
    """Rows of a CSV whose ``column`` names a slide in ``keep``, re-pointed from ``target``'s
    folder (one level below ``source``'s)."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = [
        {**row, column: f"../{row[column]}"}
        for row in rows
        if (source.parent / row[column]).resolve() in keep
    ]
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def _package(
    root: Path,
    name: str,
    stain: Literal["none", "macenko"],
    train: Sequence[LabelledFile],
    held_out: Sequence[LabelledFile],
    console: Console,
) -> Path:
    """Train, export and package one grader, unless its package exists."""
    folder = root / "packages" / name
    if (folder / MANIFEST).exists():
        return folder
    started = time.monotonic()
    grader, history = _train(train, held_out, replace(SETTINGS, stain=stain))
    onnx_path = root / "models" / f"{name}.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline.export(grader, onnx_path)
    package_for_tef(onnx_path, _manifest(grader.settings, name, stain), folder)
    seconds = time.monotonic() - started
    console.print(
        f"{TAG} {name} trained at {HOME_SITE}, kappa {history.final.metric:.2f} ({seconds:.0f} s)"
    )
    return folder


def _train(
    train: Sequence[LabelledFile],
    held_out: Sequence[LabelledFile],
    settings: pipeline.ProstateSettings,
) -> tuple[pipeline.Grader, TrainHistory]:
    """:func:`pipeline.train`, leaving torch's thread count as it found it."""
    threads = torch.get_num_threads()
    try:
        return pipeline.train(train, held_out, CONFIG, settings)
    finally:
        torch.set_num_threads(threads)


def _manifest(settings: pipeline.ProstateSettings, name: str, stain: str) -> dict[str, Any]:
    manifest = pipeline.manifest(settings, name=name, version=VERSION, target="isup")
    handling = "Macenko stain normalisation" if stain == "macenko" else "no stain handling"
    manifest["algorithm"]["description"] = (
        f"SYNTHETIC DEMO MODEL, trained on generated slides of {HOME_SITE} only ({handling}). "
        + manifest["algorithm"]["description"]
    )
    return manifest
