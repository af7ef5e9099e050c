"""The catalog writer: one transaction a batch, parents added once, series counts kept true."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pytest

from oncofed.catalog.records import InstanceRecord
from oncofed.catalog.writer import CollectionSpec, write_batch
from oncofed.node import Node

BASE = InstanceRecord(
    patient_id="FAKE-PATIENT-01",
    patient_sex=None,
    age_years=61.0,
    study_uid="1.2.826.0.1.3680043.10.1.1",
    study_date=None,
    study_description="FAKE STUDY",
    series_uid="1.2.826.0.1.3680043.10.2.1",
    modality="CT",
    body_part=None,
    manufacturer="FAKE VENDOR",
    model=None,
    series_description=None,
    sop_uid="1.2.826.0.1.3680043.10.3.1",
    sop_class="1.2.840.10008.5.1.4.1.1.2",
    transfer_syntax="1.2.840.10008.1.2.1",
    sha256="a" * 64,
    size=1000,
    frames=1,
    rows=512,
    cols=512,
)


def _instance(n: int, **changes: object) -> InstanceRecord:
    return replace(BASE, sop_uid=f"{BASE.sop_uid}{n}", sha256=f"{n:064x}", **changes)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with Node.init(tmp_path / "node") as node:
        node.ensure_collection(CollectionSpec("fake-ct", "Fake CT"))
        yield node.catalog.con


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.execute(sql).fetchall()


def test_batches_into_one_series_add_its_parents_once_and_grow_its_counts(
    con: duckdb.DuckDBPyConnection,
) -> None:
    first = write_batch(con, "fake-ct", [_instance(1), _instance(2, patient_sex="F")])
    later = _instance(3, age_years=58.0, study_date=date(2020, 1, 2), size=500)
    second = write_batch(con, "fake-ct", [later])
    assert (first.added, first.bytes_added, second.added, second.bytes_added) == (2, 2000, 1, 500)
    assert _rows(con, "SELECT sex, age_at_first_study FROM patient") == [("F", 61.0)]
    assert _rows(con, "SELECT count(*), any_value(description) FROM study") == [(1, "FAKE STUDY")]
    assert _rows(con, "SELECT instance_count, bytes, modality FROM series") == [(3, 2500, "CT")]
    assert _rows(con, "SELECT count(DISTINCT sop_uid), count(*) FROM instance") == [(3, 3)]


def test_a_batch_sorts_out_stored_conflicting_and_repeated_instances(
    con: duckdb.DuckDBPyConnection,
) -> None:
    write_batch(con, "fake-ct", [_instance(1)])
    again, changed = _instance(1), replace(_instance(1), sha256="f" * 64)
    new, new_repeated = _instance(2), _instance(2)
    outcome = write_batch(con, "fake-ct", [again, new, new_repeated, changed])
    assert outcome.added == 1
    assert outcome.already_present == [again, new_repeated]
    assert outcome.conflicts == [changed]
    assert _rows(con, "SELECT instance_count, bytes FROM series") == [(2, 2000)]


def test_a_failed_batch_leaves_the_catalog_as_it_was(con: duckdb.DuckDBPyConnection) -> None:
    write_batch(con, "fake-ct", [_instance(1)])
    other_series = _instance(2, series_uid="1.2.826.0.1.3680043.10.2.2", rows=2**40)
    with pytest.raises(duckdb.Error):  # rows is an INTEGER column: the insert fails
        write_batch(con, "fake-ct", [_instance(3), other_series])
    assert _rows(con, "SELECT count(*) FROM series") == [(1,)]
    assert _rows(con, "SELECT count(*), sum(instance_count) FROM series") == [(1, 1)]
    assert _rows(con, "SELECT count(*) FROM instance") == [(1,)]
