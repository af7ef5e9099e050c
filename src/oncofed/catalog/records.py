"""What the ingest pipeline hands the catalog writer for each stored instance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class InstanceRecord:
    """The catalog's view of one stored DICOM instance (values are already de-identified)."""

    patient_id: str
    patient_sex: str | None
    age_years: float | None
    study_uid: str
    study_date: date | None
    study_description: str | None
    series_uid: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    model: str | None
    series_description: str | None
    sop_uid: str
    sop_class: str | None
    transfer_syntax: str | None
    sha256: str
    size: int
    frames: int | None
    rows: int | None
    cols: int | None
    birth_year: int | None = None
