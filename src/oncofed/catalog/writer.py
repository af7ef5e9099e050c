"""Writes ingested instances into the catalog, one transaction per batch.

A batch either lands whole or not at all (DuckDB's write-ahead log), so a process killed
mid-ingest leaves the catalog as it was after the last committed batch. Blobs are stored before
their batch is written, so no row ever points at a missing blob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import duckdb
import pyarrow as pa

from oncofed.catalog.records import InstanceRecord
from oncofed.catalog.schema import patient_natural_key, surrogate_key


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch changed: new instances, and inputs already present or in conflict."""

    added: int
    bytes_added: int
    already_present: list[InstanceRecord]
    conflicts: list[InstanceRecord]


@dataclass(frozen=True)
class CollectionSpec:
    """A collection to create (or leave as it is) before ingesting into it."""

    collection_id: str
    title: str
    description: str | None = None
    cancer_types: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    license: str | None = None
    tier: int = 1
    data_holder: str | None = None
    deidentified_at_source: bool = False


def ensure_collection(con: duckdb.DuckDBPyConnection, spec: CollectionSpec) -> None:
    """Create the collection if it does not exist yet (source 'ingest')."""
    con.execute(
        "INSERT INTO collection (collection_id, title, description, cancer_types, body_parts,"
        " license, tier, data_holder, source, deidentified_at_source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ingest', ?) ON CONFLICT DO NOTHING",
        [
            spec.collection_id,
            spec.title,
            spec.description,
            list(spec.cancer_types),
            list(spec.body_parts),
            spec.license,
            spec.tier,
            spec.data_holder,
            spec.deidentified_at_source,
        ],
    )


_RECORD_FIELDS = [f.name for f in fields(InstanceRecord)]
_ARROW_TYPES = {"study_date": pa.date32(), "age_years": pa.float64(), "size": pa.int64()}
_ARROW_INTS = {"frames", "rows", "cols", "birth_year"}


def _arrow_type(name: str) -> pa.DataType:
    if name in _ARROW_INTS:
        return pa.int32()
    return _ARROW_TYPES.get(name, pa.string())


def write_batch(
    con: duckdb.DuckDBPyConnection, collection_id: str, records: Sequence[InstanceRecord]
) -> BatchOutcome:
    """Add ``records`` to ``collection_id`` in one transaction; skip instances already stored."""
    if not records:
        return BatchOutcome(0, 0, [], [])
    first: dict[str, InstanceRecord] = {}
    repeats: list[InstanceRecord] = []
    for record in records:
        if record.sop_uid in first:
            repeats.append(record)
        else:
            first[record.sop_uid] = record
    unique = list(first.values())
    batch = _as_arrow(collection_id, unique)
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("ingest_batch", batch)
        known = dict(
            con.execute(
                "SELECT b.sop_uid, i.sha256 FROM ingest_batch b JOIN instance i USING (sop_uid)"
            ).fetchall()
        )
        fresh = [r for r in unique if r.sop_uid not in known]
        present = [r for r in unique if known.get(r.sop_uid) == r.sha256]
        conflicts = [r for r in unique if r.sop_uid in known and known[r.sop_uid] != r.sha256]
        if fresh:
            con.unregister("ingest_batch")
            con.register("ingest_batch", _as_arrow(collection_id, fresh))
            _insert_new(con)
        con.unregister("ingest_batch")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for repeat in repeats:
        same = first[repeat.sop_uid].sha256 == repeat.sha256
        (present if same else conflicts).append(repeat)
    return BatchOutcome(len(fresh), sum(r.size for r in fresh), present, conflicts)


def _as_arrow(collection_id: str, records: Sequence[InstanceRecord]) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in _RECORD_FIELDS}
    for record in records:
        for name in _RECORD_FIELDS:
            columns[name].append(getattr(record, name))
    table = pa.table({name: pa.array(columns[name], type=_arrow_type(name)) for name in columns})
    keys = {
        "collection_id": [collection_id] * len(records),
        "patient_key": [
            surrogate_key(patient_natural_key(collection_id, r.patient_id)) for r in records
        ],
        "study_key": [surrogate_key(r.study_uid) for r in records],
        "series_key": [surrogate_key(r.series_uid) for r in records],
    }
    for name, values in keys.items():
        kind = pa.string() if name == "collection_id" else pa.uint64()
        table = table.append_column(name, pa.array(values, type=kind))
    return table


def _insert_new(con: duckdb.DuckDBPyConnection) -> None:
    """Insert the new patients, studies, series and instances of ``ingest_batch``."""
    con.execute(
        "INSERT INTO patient (patient_key, pseudo_id, collection_id, sex, birth_year_shifted,"
        " age_at_first_study)"
        " SELECT patient_key, any_value(patient_id), any_value(collection_id),"
        " any_value(patient_sex), any_value(birth_year), min(age_years) FROM ingest_batch b"
        " WHERE NOT EXISTS (SELECT 1 FROM patient p WHERE p.patient_key = b.patient_key)"
        " GROUP BY patient_key"
    )
    con.execute(
        "INSERT INTO study (study_key, study_uid, patient_key, collection_id, study_date,"
        " description, age_years)"
        " SELECT study_key, any_value(study_uid), any_value(patient_key),"
        " any_value(collection_id), any_value(study_date), any_value(study_description),"
        " any_value(age_years) FROM ingest_batch b"
        " WHERE NOT EXISTS (SELECT 1 FROM study t WHERE t.study_key = b.study_key)"
        " GROUP BY study_key"
    )
    con.execute(
        "INSERT INTO series (series_key, series_uid, study_key, patient_key, collection_id,"
        " modality, body_part, manufacturer, model, sop_class, transfer_syntax, description,"
        " sex, age_years)"
        " SELECT series_key, any_value(series_uid), any_value(study_key), any_value(patient_key),"
        " any_value(collection_id), any_value(modality), any_value(body_part),"
        " any_value(manufacturer), any_value(model), any_value(sop_class),"
        " any_value(transfer_syntax), any_value(series_description), any_value(patient_sex),"
        " any_value(age_years) FROM ingest_batch b"
        " WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.series_key = b.series_key)"
        " GROUP BY series_key"
    )
    con.execute(
        "INSERT INTO instance (sop_uid, series_key, sop_class, sha256, size, frames, rows, cols)"
        " SELECT sop_uid, series_key, sop_class, sha256, size, frames, rows, cols"
        " FROM ingest_batch"
    )
    con.execute(
        "UPDATE series SET instance_count = series.instance_count + d.n,"
        " bytes = series.bytes + d.b FROM (SELECT series_key, count(*) AS n, sum(size) AS b"
        " FROM ingest_batch GROUP BY series_key) d WHERE series.series_key = d.series_key"
    )
