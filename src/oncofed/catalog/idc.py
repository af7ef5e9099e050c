"""Import of the NCI Imaging Data Commons index (PyPI ``idc-index-data``) as reference metadata.

IDC collections become metadata-only collections (source ``idc``): series carry their instance
counts and sizes, no blobs. The import replaces all IDC rows in one transaction, so it is
idempotent (same version: nothing to do) and upgrade-safe (new version: old rows replaced whole).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from oncofed.catalog.schema import PATIENT_KEY_SEPARATOR
from oncofed.errors import ReferenceImportError

SOURCE = "idc"
# IDC stores series sizes in megabytes (10^6 bytes).
BYTES_PER_MB = 1_000_000
_LIST_SPLIT = re.compile(r",(?!\s*Not Otherwise Specified)\s*")


@dataclass(frozen=True)
class IdcIndexFiles:
    """The parquet files of one ``idc-index-data`` release."""

    version: str
    series_parquet: Path
    collections_parquet: Path


@dataclass(frozen=True)
class IdcImportResult:
    """What an import did."""

    version: str
    collections: int
    patients: int
    studies: int
    series: int
    instances: int
    skipped_same_version: bool
    seconds: float


def bundled_index() -> IdcIndexFiles:
    """The index shipped in the installed ``idc-index-data`` package."""
    try:
        import idc_index_data
    except ModuleNotFoundError as exc:
        raise ReferenceImportError(
            "the IDC index needs the package idc-index-data: pip install idc-index-data"
        ) from exc
    series = Path(str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH))
    return IdcIndexFiles(
        version=str(idc_index_data.__version__),
        series_parquet=series,
        collections_parquet=series.with_name("collections_index.parquet"),
    )


def split_list(text: str | None) -> list[str]:
    """Split IDC's comma-separated lists, keeping 'X, Not Otherwise Specified' whole."""
    if not text:
        return []
    return [part.strip() for part in _LIST_SPLIT.split(text) if part.strip()]


def imported_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """The IDC version last imported into this catalog, if any."""
    row = con.execute(
        "SELECT version FROM reference_import WHERE source = ? ORDER BY imported_at DESC LIMIT 1",
        [SOURCE],
    ).fetchone()
    return str(row[0]) if row else None


def import_idc(
    con: duckdb.DuckDBPyConnection, files: IdcIndexFiles | None = None, *, force: bool = False
) -> IdcImportResult:
    """Load (or replace) the IDC reference collections in the catalog."""
    started = time.perf_counter()
    files = files or bundled_index()
    for path in (files.series_parquet, files.collections_parquet):
        if not path.is_file():
            raise ReferenceImportError(f"IDC index file missing: {path}")
    if not force and imported_version(con) == files.version:
        return _result(con, files.version, skipped=True, started=started)
    _refuse_clashing_collections(con, files)
    con.execute("BEGIN TRANSACTION")
    try:
        _delete_idc_rows(con)
        _insert_collections(con, files)
        _insert_hierarchy(con, files)
        con.execute(
            "INSERT INTO reference_import (source, version, collections, series)"
            " SELECT ?, ?, (SELECT count(*) FROM collection WHERE source = ?),"
            " (SELECT count(*) FROM series s JOIN collection c USING (collection_id)"
            "  WHERE c.source = ?)",
            [SOURCE, files.version, SOURCE, SOURCE],
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise ReferenceImportError(f"IDC import from {files.series_parquet} failed: {exc}") from exc
    con.execute("CHECKPOINT")
    return _result(con, files.version, skipped=False, started=started)


def _refuse_clashing_collections(con: duckdb.DuckDBPyConnection, files: IdcIndexFiles) -> None:
    clashes = con.execute(
        "SELECT collection_id FROM collection WHERE source <> ? AND collection_id IN"
        " (SELECT DISTINCT collection_id FROM read_parquet(?))",
        [SOURCE, str(files.collections_parquet)],
    ).fetchall()
    if clashes:
        names = ", ".join(sorted(r[0] for r in clashes))
        raise ReferenceImportError(
            f"local collections have the same id as IDC collections: {names}; rename them first"
        )


_DELETE_IDC_ROWS = (
    "DELETE FROM clinical WHERE patient_key IN (SELECT patient_key FROM patient"
    " WHERE collection_id IN (SELECT collection_id FROM collection WHERE source = 'idc'))",
    *(
        f"DELETE FROM {table} WHERE collection_id IN"
        " (SELECT collection_id FROM collection WHERE source = 'idc')"
        for table in ("label", "slide", "series", "study", "patient")
    ),
    "DELETE FROM collection WHERE source = 'idc'",
)


def _delete_idc_rows(con: duckdb.DuckDBPyConnection) -> None:
    for statement in _DELETE_IDC_ROWS:
        con.execute(statement)


def _insert_collections(con: duckdb.DuckDBPyConnection, files: IdcIndexFiles) -> None:
    rows = con.execute(
        "SELECT c.collection_id, c.collection_name, c.description, c.cancer_types,"
        " c.tumor_locations, s.license, s.doi FROM read_parquet(?) c LEFT JOIN ("
        "  SELECT collection_id, any_value(license_short_name) AS license,"
        "  any_value(source_DOI) AS doi FROM read_parquet(?) GROUP BY 1) s USING (collection_id)",
        [str(files.collections_parquet), str(files.series_parquet)],
    ).fetchall()
    con.executemany(
        "INSERT INTO collection (collection_id, title, description, cancer_types, body_parts,"
        " license, tier, data_holder, source, deidentified_at_source, doi)"
        " VALUES (?, ?, ?, ?, ?, ?, 1, 'NCI Imaging Data Commons', 'idc', TRUE, ?)",
        [
            [cid, name or cid, description, split_list(cancer), split_list(sites), lic, doi]
            for cid, name, description, cancer, sites, lic, doi in rows
        ],
    )


# Per-series values derived from the IDC columns; shared by the three inserts below.
_IDC_SERIES_TABLE = f"""
CREATE OR REPLACE TEMP TABLE idc_series AS
SELECT
    collection_id,
    PatientID AS patient_id,
    md5_number_upper(collection_id || chr({ord(PATIENT_KEY_SEPARATOR)}) || PatientID)
        AS patient_key,
    StudyInstanceUID AS study_uid,
    md5_number_upper(StudyInstanceUID) AS study_key,
    SeriesInstanceUID AS series_uid,
    md5_number_upper(SeriesInstanceUID) AS series_key,
    CASE WHEN upper(PatientSex) IN ('M', 'F', 'O') THEN upper(PatientSex) END AS sex,
    CASE WHEN regexp_full_match(PatientAge, '[0-9]{{3}}[DWMY]') THEN
        floor(CAST(left(PatientAge, 3) AS INTEGER) * CASE right(PatientAge, 1)
            WHEN 'Y' THEN 1.0 WHEN 'M' THEN 1.0 / 12 WHEN 'W' THEN 7 / 365.25
            ELSE 1 / 365.25 END + 1e-9)
    END AS age_years,
    TRY_CAST(StudyDate AS DATE) AS study_date,
    StudyDescription AS study_description,
    upper(Modality) AS modality,
    upper(BodyPartExamined) AS body_part,
    Manufacturer AS manufacturer,
    ManufacturerModelName AS model,
    SOPClassUID AS sop_class,
    TransferSyntaxUID AS transfer_syntax,
    SeriesDescription AS series_description,
    instanceCount AS instance_count,
    CAST(round(series_size_MB * {BYTES_PER_MB}) AS BIGINT) AS bytes
FROM read_parquet(?)
WHERE PatientID IS NOT NULL AND StudyInstanceUID IS NOT NULL AND SeriesInstanceUID IS NOT NULL
"""


def _insert_hierarchy(con: duckdb.DuckDBPyConnection, files: IdcIndexFiles) -> None:
    con.execute(_IDC_SERIES_TABLE, [str(files.series_parquet)])
    con.execute(
        "INSERT INTO patient (patient_key, pseudo_id, collection_id, sex, age_at_first_study)"
        " SELECT patient_key, any_value(patient_id), any_value(collection_id), any_value(sex),"
        " min(age_years) FROM idc_series GROUP BY patient_key"
    )
    con.execute(
        "INSERT INTO study (study_key, study_uid, patient_key, collection_id, study_date,"
        " description, age_years)"
        " SELECT study_key, any_value(study_uid), any_value(patient_key),"
        " any_value(collection_id), any_value(study_date), any_value(study_description),"
        " min(age_years) FROM idc_series GROUP BY study_key"
    )
    con.execute(
        "INSERT INTO series (series_key, series_uid, study_key, patient_key, collection_id,"
        " modality, body_part, manufacturer, model, sop_class, transfer_syntax, description,"
        " sex, age_years, instance_count, bytes)"
        " SELECT series_key, series_uid, study_key, patient_key, collection_id, modality,"
        " body_part, manufacturer, model, sop_class, transfer_syntax, series_description, sex,"
        " age_years, instance_count, bytes FROM idc_series ORDER BY collection_id, patient_key"
    )
    con.execute("DROP TABLE idc_series")


def _result(
    con: duckdb.DuckDBPyConnection, version: str, *, skipped: bool, started: float
) -> IdcImportResult:
    row = con.execute(
        "SELECT count(DISTINCT collection_id), count(DISTINCT patient_key),"
        " count(DISTINCT study_key), count(*), coalesce(sum(instance_count), 0)"
        " FROM series WHERE collection_id IN (SELECT collection_id FROM collection"
        " WHERE source = 'idc')"
    ).fetchone()
    assert row is not None
    collections, patients, studies, series, instances = (int(v) for v in row)
    return IdcImportResult(
        version,
        collections,
        patients,
        studies,
        series,
        instances,
        skipped_same_version=skipped,
        seconds=time.perf_counter() - started,
    )
