"""Writes whole-slide images into the catalog: a slide row linked to patient, study and series."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from oncofed.catalog.schema import patient_natural_key, surrogate_key

SLIDE_MODALITY = "SM"


@dataclass(frozen=True)
class SlideRecord:
    """The catalog's view of one stored, de-identified slide."""

    slide_id: str
    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sha256: str
    bytes: int
    format: str
    vendor: str | None
    mpp_x: float | None
    mpp_y: float | None
    magnification: float | None
    width: int
    height: int
    levels: int
    stain: str | None = None
    body_part: str | None = None


def write_slide(con: duckdb.DuckDBPyConnection, collection_id: str, record: SlideRecord) -> bool:
    """Add the slide (and its patient/study/series if new) in one transaction.

    Returns False, changing nothing, when a slide with the same content is already catalogued.
    """
    patient_key = surrogate_key(patient_natural_key(collection_id, record.patient_pseudonym))
    study_key = surrogate_key(record.study_uid)
    series_key = surrogate_key(record.series_uid)
    con.execute("BEGIN TRANSACTION")
    try:
        present = con.execute(
            "SELECT count(*) FROM slide WHERE slide_id = ?", [record.slide_id]
        ).fetchone()
        if present and present[0]:
            con.execute("ROLLBACK")
            return False
        con.execute(
            "INSERT INTO patient (patient_key, pseudo_id, collection_id)"
            " SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM patient WHERE patient_key = ?)",
            [patient_key, record.patient_pseudonym, collection_id, patient_key],
        )
        con.execute(
            "INSERT INTO study (study_key, study_uid, patient_key, collection_id)"
            " SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM study WHERE study_key = ?)",
            [study_key, record.study_uid, patient_key, collection_id, study_key],
        )
        con.execute(
            "INSERT INTO series (series_key, series_uid, study_key, patient_key, collection_id,"
            " modality, body_part, manufacturer, sex, age_years, instance_count, bytes)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, p.sex, t.age_years, 1, ?"
            " FROM patient p, study t WHERE p.patient_key = ? AND t.study_key = ?",
            [
                series_key, record.series_uid, study_key, patient_key, collection_id,
                SLIDE_MODALITY, record.body_part, record.vendor, record.bytes,
                patient_key, study_key,
            ],
        )  # fmt: skip
        con.execute(
            "INSERT INTO slide (slide_id, series_key, patient_key, collection_id, vendor, format,"
            " mpp_x, mpp_y, magnification, width, height, levels, stain, sha256, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                record.slide_id, series_key, patient_key, collection_id, record.vendor,
                record.format, record.mpp_x, record.mpp_y, record.magnification, record.width,
                record.height, record.levels, record.stain, record.sha256, record.bytes,
            ],
        )  # fmt: skip
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return True
