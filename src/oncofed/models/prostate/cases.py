"""Labelled slides to train on: a node's cohort, or a sample sheet with a label CSV."""

from __future__ import annotations

from pathlib import Path

from oncofed.catalog.labels import read_label_csv
from oncofed.errors import OncofedError
from oncofed.ingest.slides import read_sample_sheet
from oncofed.models.cli_support import LabelledFile, node_cases
from oncofed.node import Node

LABEL_KIND = "isup_grade"
CLASSES = tuple(str(grade) for grade in range(6))


def files_from_sheet(sample_sheet: Path, labels_csv: Path) -> list[LabelledFile]:
    """Slides of a sample sheet (``path,patient_id,...``, as ``oncofed`` ingests them) with
    their ``isup_grade`` from a label CSV (``Node.import_labels`` format: slides named relative
    to the CSV); a row naming the slide wins over a row for the whole patient. The site is the
    name of the slide's folder."""
    by_slide: dict[tuple[str, Path], str] = {}
    by_patient: dict[str, str] = {}
    for row in read_label_csv(labels_csv):
        if row.kind != LABEL_KIND:
            continue
        if row.slide:
            by_slide[(row.patient_id, (labels_csv.parent / row.slide).resolve())] = row.value
        else:
            by_patient[row.patient_id] = row.value
    if not by_slide and not by_patient:
        raise OncofedError(f"{labels_csv}: no rows of kind {LABEL_KIND!r}")
    files = []
    for item in read_sample_sheet(sample_sheet):
        value = by_slide.get((item.patient_id, item.path), by_patient.get(item.patient_id))
        if value is None:
            continue
        if not item.path.is_file():
            raise OncofedError(f"{sample_sheet}: slide {item.path} does not exist")
        files.append(LabelledFile(item.path, int(value), item.patient_id, item.path.parent.name))
    if not files:
        raise OncofedError(f"{sample_sheet}: no slide has an {LABEL_KIND} label in {labels_csv}")
    return files


def files_from_node(node: Node, cohort: dict[str, object]) -> list[LabelledFile]:
    """The cohort's slides at ``node`` with an ``isup_grade`` label, as stored files."""
    return node_cases(
        node, dict(cohort), modality="SM", input_kind="wsi", label_kind=LABEL_KIND,
        classes=CLASSES,
    )  # fmt: skip
