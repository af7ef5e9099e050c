"""Whole-slide ingest into a node: de-identified blobs, slide rows linked to patients."""

from __future__ import annotations

from pathlib import Path

import openslide
import pytest

from oncofed.errors import IngestError
from oncofed.ingest.slides import SlideInput, read_sample_sheet
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort
from oncofed.testing.wsi import SyntheticSlide, make_slide


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[SyntheticSlide]:
    root = tmp_path_factory.mktemp("slides")
    return [
        make_slide(root / "FAKE-SLIDE-0001_scan.svs", "svs", seed=1, width=2048, height=1536),
        make_slide(root / "biopsy-2.ome.tiff", "ome", seed=2, width=2048, height=1536),
    ]


def test_slides_are_deidentified_stored_and_catalogued(
    node: Node, slides: list[SyntheticSlide]
) -> None:
    items = [SlideInput(s.path, "FAKE-0001", "FAKE-CASE-7", "H&E", "PROSTATE") for s in slides]
    report = node.ingest_slides(items, "prostate-biopsies")
    assert (report.added, report.failed) == (2, [])
    rows = node.catalog.con.execute(
        "SELECT sl.sha256, sl.format, sl.width, sl.levels, sl.stain, s.modality, s.body_part"
        " FROM slide sl JOIN series s USING (series_key) ORDER BY sl.format"
    ).fetchall()
    assert [(r[1], r[2], r[4], r[5], r[6]) for r in rows] == [
        ("aperio", 2048, "H&E", "SM", "PROSTATE"),
        ("ome-tiff", 2048, "H&E", "SM", "PROSTATE"),
    ]
    counts = node.catalog.query({"collection": ["prostate-biopsies"]}).counts
    assert (counts.patients, counts.studies, counts.series) == (1, 1, 2)
    planted = {"FAKE-0001", "FAKE-CASE-7", *slides[0].identifiers.all(), "FAKE-SLIDE-0001_scan"}
    for digest, *_ in rows:
        blob = node.store.path_for(digest)
        data = blob.read_bytes()
        assert [v for v in planted if v.encode() in data] == []
    aperio = node.store.path_for(rows[0][0])
    with openslide.OpenSlide(aperio) as reopened:  # a blob has no suffix; OpenSlide still reads it
        assert reopened.dimensions == (2048, 1536)
        assert "label" not in reopened.associated_images
    assert not list(node.store.tmp.iterdir())


def test_slide_ingest_is_idempotent(node: Node, slides: list[SyntheticSlide]) -> None:
    item = SlideInput(slides[0].path, "FAKE-0001")
    node.ingest_slides([item], "biopsies")
    again = node.ingest_slides([item], "biopsies")
    assert (again.added, again.already_present) == (0, 1)
    assert node.catalog.table_counts()["slide"] == 1


def test_slides_join_the_patients_radiology(
    node: Node, slides: list[SyntheticSlide], tmp_path: Path
) -> None:
    cohort = generate_cohort(tmp_path / "dicom", patients=2, seed=4)
    node.ingest(cohort.files, "mixed")
    node.ingest_slides([SlideInput(slides[0].path, "FAKE-0001")], "mixed")
    counts = node.catalog.query({"collection": ["mixed"]}).counts
    assert counts.patients == cohort.patients  # FAKE-0001's slide joined FAKE-0001
    sm = node.catalog.query({"collection": ["mixed"], "modality": ["SM"]}).counts
    assert (sm.patients, sm.series) == (1, 1)


def test_bad_slides_are_reported_and_the_run_goes_on(
    node: Node, slides: list[SyntheticSlide], tmp_path: Path
) -> None:
    truncated = tmp_path / "cut.svs"
    truncated.write_bytes(slides[0].path.read_bytes()[:50_000])
    text = tmp_path / "notes.svs"
    text.write_text("not a slide", encoding="utf-8")
    items = [SlideInput(p, "FAKE-0002") for p in (truncated, text, tmp_path / "gone.svs")]
    items.append(SlideInput(slides[1].path, "FAKE-0002"))
    report = node.ingest_slides(items, "biopsies")
    assert report.added == 1
    assert [Path(f.path).name for f in report.failed] == ["cut.svs", "notes.svs", "gone.svs"]
    assert all(f.reason for f in report.failed)
    assert not list(node.store.tmp.iterdir())


def test_sample_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "path,patient_id,study_id,stain,body_part\na.svs,FAKE-1,C1,H&E,prostate\n",
        encoding="utf-8",
    )
    (item,) = read_sample_sheet(sheet)
    assert item == SlideInput(tmp_path / "a.svs", "FAKE-1", "C1", "H&E", "PROSTATE")
    sheet.write_text("file,who\na.svs,FAKE-1\n", encoding="utf-8")
    with pytest.raises(IngestError, match="needs a header with path and patient_id"):
        read_sample_sheet(sheet)
    sheet.write_text("path,patient_id\na.svs,\n", encoding="utf-8")
    with pytest.raises(IngestError, match="line 2: needs path and patient_id"):
        read_sample_sheet(sheet)
