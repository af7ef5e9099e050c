"""Whole-slide ingest: de-identify each slide into the store and catalogue it with its patient.

Slides are linked to patients through a sample sheet (slide file → patient id, case/study id,
stain), as pathology archives keep them. Pseudonyms come from the node's de-identification key
with the same derivation as DICOM ingest, so a patient's slides and radiology meet in one
pseudonymous patient. Each slide is written to the store's ``tmp/`` as a de-identified,
byte-verified copy, then moved into place, then catalogued; a failure leaves nothing behind.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from oncofed.catalog.slides import SlideRecord, write_slide
from oncofed.deid.keys import Keyring
from oncofed.errors import IngestError, OncofedError
from oncofed.ingest.report import IngestReport, Skipped
from oncofed.storage.blobstore import BlobStore
from oncofed.wsi.deid import deidentify_slide, output_suffix
from oncofed.wsi.metadata import read_metadata
from oncofed.wsi.open import DICOM_WSI, detect_format

STAGE_NAME = "wsi-deid"
MANIFEST_COLUMNS = ("path", "patient_id", "study_id", "stain", "body_part")


@dataclass(frozen=True)
class SlideInput:
    """One slide to ingest and whose it is."""

    path: Path
    patient_id: str
    study_id: str = ""
    stain: str | None = None
    body_part: str | None = None


def read_sample_sheet(sheet: Path) -> list[SlideInput]:
    """Read a CSV with columns path, patient_id[, study_id, stain, body_part].

    Relative paths are resolved against the sheet's folder.
    """
    try:
        with sheet.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"cannot read sample sheet {sheet}: {exc}") from exc
    if not rows or not {"path", "patient_id"} <= set(rows[0]):
        raise IngestError(
            f"sample sheet {sheet}: needs a header with path and patient_id "
            f"(optional: {', '.join(MANIFEST_COLUMNS[2:])})"
        )
    slides = []
    for line, row in enumerate(rows, start=2):
        if not (row.get("path") or "").strip() or not (row.get("patient_id") or "").strip():
            raise IngestError(f"sample sheet {sheet}, line {line}: needs path and patient_id")
        slides.append(
            SlideInput(
                path=(sheet.parent / row["path"].strip()).resolve(),
                patient_id=row["patient_id"].strip(),
                study_id=(row.get("study_id") or "").strip(),
                stain=(row.get("stain") or "").strip() or None,
                body_part=(row.get("body_part") or "").strip().upper() or None,
            )
        )
    return slides


class SlideIngestor:
    """Ingests slides into a catalog connection and a blob store with a node key."""

    def __init__(self, con: duckdb.DuckDBPyConnection, store: BlobStore, key: bytes) -> None:
        self.con = con
        self.store = store
        self.keyring = Keyring(key)

    def run(self, slides: Sequence[SlideInput], collection_id: str) -> IngestReport:
        """Ingest every slide; a bad slide is reported and the run goes on."""
        report = IngestReport(collection=collection_id, stage=STAGE_NAME)
        report.files_seen = len(slides)
        self.store.create()
        for item in slides:
            try:
                record = self._store_one(item)
            except OncofedError as exc:
                report.failed.append(Skipped(str(item.path), exc.message))
                continue
            if write_slide(self.con, collection_id, record):
                report.added += 1
                report.bytes_added += record.bytes
            else:
                report.already_present += 1
        report.finished_at = datetime.now(UTC).isoformat()
        return report

    def _store_one(self, item: SlideInput) -> SlideRecord:
        if not item.path.exists():
            raise IngestError(f"no such slide: {item.path}")
        fmt = detect_format(item.path)
        if fmt == DICOM_WSI:
            raise IngestError(
                f"{item.path}: a DICOM-WSI slide; ingest its files as DICOM (`oncofed ingest`)"
            )
        temporary = self.store.tmp / f"{uuid.uuid4().hex}.part{output_suffix(fmt)}"
        identifiers = [v for v in (item.patient_id, item.study_id, item.path.stem) if v]
        try:
            deidentify_slide(item.path, temporary, identifiers=identifiers)
            metadata = read_metadata(temporary)
            self.store.put_file(temporary, metadata.sha256)
        finally:
            temporary.unlink(missing_ok=True)
        identity = f"id::{item.patient_id}"  # the DICOM stage's identity for a bare Patient ID
        return SlideRecord(
            slide_id=metadata.slide_id,
            patient_pseudonym=self.keyring.pseudonym(identity),
            study_uid=self.keyring.uid(f"slide-study:{identity}:{item.study_id}"),
            series_uid=self.keyring.uid(f"slide:{metadata.sha256}"),
            sha256=metadata.sha256,
            bytes=metadata.size_bytes,
            format=metadata.format,
            vendor=metadata.vendor,
            mpp_x=metadata.mpp_x,
            mpp_y=metadata.mpp_y,
            magnification=metadata.objective_power,
            width=metadata.width,
            height=metadata.height,
            levels=metadata.level_count,
            stain=item.stain,
            body_part=item.body_part,
        )
