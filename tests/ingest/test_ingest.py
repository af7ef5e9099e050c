"""Folder ingest end to end: real DICOM files in, catalog rows and blobs out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from oncofed.catalog.catalog import Catalog
from oncofed.errors import ConfigError, IngestError, NodeNotFoundError
from oncofed.node import Node
from oncofed.testing.dicom import CohortManifest, generate_cohort, write_bad_inputs


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortManifest:
    return generate_cohort(tmp_path_factory.mktemp("cohort"), patients=6, seed=3)


def assert_store_consistent(node: Node) -> None:
    """Every instance row has its blob, and every blob's bytes hash to its name."""
    rows = node.catalog.con.execute("SELECT sha256, size FROM instance").fetchall()
    for digest, size in rows:
        path = node.store.path_for(digest)
        assert path.is_file(), f"row without blob: {digest}"
        assert path.stat().st_size == size
    for blob in node.store.objects.rglob("*"):
        if blob.is_file():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert not list(node.store.objects.rglob("*.part"))


def test_cohort_lands_in_catalog_and_store(node: Node, cohort: CohortManifest) -> None:
    report = node.ingest([cohort.files[0].parents[3]], "synth", already_deidentified=True)
    assert report.added == cohort.instances == report.files_seen
    assert report.failed == [] and report.bytes_added == cohort.bytes
    counts = node.catalog.query({"collection": ["synth"]}).counts
    assert (counts.patients, counts.studies, counts.series, counts.instances, counts.bytes) == (
        cohort.patients,
        cohort.studies,
        cohort.series,
        cohort.instances,
        cohort.bytes,
    )
    by_modality = node.catalog.query({}, ["modality"]).facets["modality"]
    assert {b.value: b.series for b in by_modality} == cohort.by_modality
    assert_store_consistent(node)
    assert list(node.reports_dir.glob("ingest-*.json"))


def test_stored_blob_is_the_file_and_rows_carry_its_header(
    node: Node, cohort: CohortManifest
) -> None:
    node.ingest([cohort.files[0]], "synth", already_deidentified=True)
    original = cohort.files[0].read_bytes()
    sop_uid, digest, rows, cols = node.catalog.con.execute(
        "SELECT sop_uid, sha256, rows, cols FROM instance"
    ).fetchone()  # type: ignore[misc]
    assert node.store.get(digest) == original
    header = pydicom.dcmread(cohort.files[0], stop_before_pixels=True)
    assert (sop_uid, rows, cols) == (header.SOPInstanceUID, header.Rows, header.Columns)


def test_reingest_adds_nothing_and_says_so(node: Node, cohort: CohortManifest) -> None:
    root = cohort.files[0].parents[3]
    node.ingest([root], "synth", already_deidentified=True)
    before = node.catalog.table_counts()
    again = node.ingest([root], "synth", already_deidentified=True, workers=2)
    assert again.added == 0 and again.already_present == cohort.instances
    assert again.nothing_new and "nothing new" in again.summary()
    assert node.catalog.table_counts() == before


def test_parallel_and_serial_ingest_build_the_same_catalog(
    tmp_path: Path, cohort: CohortManifest
) -> None:
    root = cohort.files[0].parents[3]
    answers = []
    for workers in (1, 2):
        with Node.init(tmp_path / f"n{workers}") as node:
            node.ingest([root], "synth", already_deidentified=True, workers=workers)
            answers.append(
                node.catalog.con.execute(
                    "SELECT series_uid, instance_count, bytes, modality, sex, age_years"
                    " FROM series ORDER BY series_uid"
                ).fetchall()
            )
    assert answers[0] == answers[1] and len(answers[0]) == cohort.series


def test_bad_inputs_are_reported_and_do_not_stop_the_run(
    node: Node, cohort: CohortManifest, tmp_path: Path
) -> None:
    bad = write_bad_inputs(tmp_path / "bad")
    report = node.ingest([tmp_path / "bad", cohort.files[0]], "mixed", already_deidentified=True)
    reasons = {Path(item.path).name: item.reason for item in report.failed}
    assert set(reasons) == {p.name for k, p in bad.items() if k != "preambleless_valid"}
    assert reasons["empty.dcm"] == "empty file"
    assert "not DICOM" in reasons["not_dicom.dcm"]
    assert "missing required attribute SOPInstanceUID" in reasons["no_sop_uid.dcm"]
    assert "data ends inside" in reasons["truncated_pixel_data.dcm"]
    assert report.added == 2  # the preamble-less file and the good one
    assert_store_consistent(node)


def test_same_uid_with_other_content_is_a_conflict(
    node: Node, cohort: CohortManifest, tmp_path: Path
) -> None:
    node.ingest([cohort.files[0]], "synth", already_deidentified=True)
    changed = pydicom.dcmread(cohort.files[0])
    changed.SeriesDescription = "EDITED"
    changed.save_as(tmp_path / "edited.dcm")
    report = node.ingest([tmp_path / "edited.dcm"], "synth", already_deidentified=True)
    assert report.added == 0
    assert report.conflicts[0].path == changed.SOPInstanceUID
    assert "different content" in report.conflicts[0].reason


def test_pydicom_test_files_ingest(node: Node) -> None:
    from pydicom.data import get_testdata_file

    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "SC_rgb_jpeg.dcm"]
    paths = [Path(str(get_testdata_file(name))) for name in names]
    report = node.ingest(paths, "pydicom-data", already_deidentified=True)
    assert report.added == len(names), report.failed


def test_default_ingest_deidentifies_every_stored_byte(node: Node, cohort: CohortManifest) -> None:
    report = node.ingest(cohort.files, "hospital")
    assert report.added == cohort.instances and report.failed == []
    assert report.stage.startswith("deid")
    planted = {value for values in cohort.identifiers.values() for value in values}
    assert planted  # names, IDs, dates, accession numbers, UIDs, addresses, private values
    for blob in node.store.objects.rglob("*"):
        if blob.is_file():
            data = blob.read_bytes()
            leaked = [v for v in planted if v.encode() in data]
            assert leaked == [], blob
    counts = node.catalog.query({"collection": ["hospital"]}, ["sex", "age"]).counts
    assert (counts.patients, counts.series, counts.instances) == (
        cohort.patients,
        cohort.series,
        cohort.instances,
    )


def test_deidentified_reingest_links_to_the_same_pseudonyms(
    node: Node, cohort: CohortManifest
) -> None:
    node.ingest(cohort.files[:5], "hospital")
    again = node.ingest(cohort.files, "hospital")
    assert again.already_present == 5 and again.added == cohort.instances - 5
    assert node.catalog.query({}).counts.patients == cohort.patients


def test_declared_and_deidentified_data_do_not_mix(node: Node, cohort: CohortManifest) -> None:
    node.ingest([cohort.files[0]], "public", already_deidentified=True)
    with pytest.raises(IngestError, match="declared already de-identified"):
        node.ingest([cohort.files[1]], "public")
    node.ingest([cohort.files[1]], "hospital")
    with pytest.raises(IngestError, match="de-identified by this node"):
        node.ingest([cohort.files[2]], "hospital", already_deidentified=True)


def test_missing_input_path_is_named(node: Node, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"no such file or folder: .*nowhere"):
        node.ingest([tmp_path / "nowhere"], "x", already_deidentified=True)


def test_node_home_errors(tmp_path: Path) -> None:
    with pytest.raises(NodeNotFoundError, match="is not an oncofed node"):
        Node(tmp_path)
    Node.init(tmp_path / "n").close()
    with pytest.raises(ConfigError, match="already an oncofed node"):
        Node.init(tmp_path / "n")
    (tmp_path / "n" / "oncofed.toml").write_text("name = [broken", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Node(tmp_path / "n")


def test_catalog_file_reopens_with_the_data(tmp_path: Path, cohort: CohortManifest) -> None:
    with Node.init(tmp_path / "n") as node:
        node.ingest([cohort.files[0]], "synth", already_deidentified=True)
    with Catalog(tmp_path / "n" / "catalog.duckdb", read_only=True) as catalog:
        assert catalog.query({}).counts.instances == 1
