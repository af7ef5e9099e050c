"""Reference label import: identifier mapping, validation, idempotence, nothing raw stored."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from oncofed.catalog.labels import LabelError, normalise_label
from oncofed.ingest.slides import SlideInput
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort
from oncofed.testing.wsi import make_slide

COLUMNS = ("patient_id", "study_uid", "series_uid", "slide", "study_id", "kind", "value",
           "source", "confidence")  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def originals(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, list[tuple[str, str]]]]:
    """A synthetic cohort and, per original Patient ID, its (study UID, series UID) pairs."""
    root = tmp_path_factory.mktemp("cohort")
    manifest = generate_cohort(root / "in", patients=3, seed=11, modalities=("CT", "MR"))
    seen: dict[str, list[tuple[str, str]]] = {}
    for path in manifest.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        pair = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        if pair not in seen.setdefault(str(ds.PatientID), []):
            seen[str(ds.PatientID)].append(pair)
    return root / "in", seen


@pytest.fixture
def loaded(
    tmp_path: Path, originals: tuple[Path, dict[str, list[tuple[str, str]]]]
) -> Iterator[Node]:
    with Node.init(tmp_path / "node", name="label-node") as node:
        node.ingest([originals[0]], "synth", workers=1, show_progress=False)
        yield node


def label_rows(node: Node) -> list[tuple[object, ...]]:
    return node.catalog.con.execute(
        "SELECT patient_key, study_key, series_key, kind, value, source, confidence FROM label"
        " ORDER BY ALL"
    ).fetchall()


def test_labels_land_on_the_named_patient_study_and_series(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    by_patient = originals[1]
    (p1, pairs1), (p2, pairs2), (p3, _) = sorted(by_patient.items())
    study, series = pairs1[0]
    path = write_csv(
        tmp_path / "labels.csv",
        [
            {"patient_id": p1, "study_uid": study, "series_uid": series, "kind": "malignant",
             "value": "1", "source": "pathology", "confidence": "0.9"},
            {"patient_id": p2, "study_uid": pairs2[0][0], "kind": "gleason", "value": " 3 + 4 "},
            {"patient_id": p3, "kind": "isup_grade", "value": "2", "source": "reader-1"},
            {"patient_id": p3, "kind": "diagnosis_icd_o3", "value": "8140/3"},
        ],
    )  # fmt: skip
    result = loaded.import_labels(path, "synth")
    assert (result.added, result.updated, result.unchanged, result.unmatched) == (4, 0, 0, [])

    one = loaded.catalog.query({"label:malignant": ["1"]}).counts
    assert (one.patients, one.series) == (1, 1)
    matched = loaded.catalog.matching_series({"label:malignant": "1"})
    assert [m["series_uid"] for m in matched] != [series]  # stored UIDs are the pseudonymous ones
    seen = loaded.catalog.query({"label:gleason": "3+4"}).counts
    assert (seen.patients, seen.studies) == (1, 1)  # only the labelled study of that patient
    whole = loaded.catalog.query({"label:isup_grade": "2"}).counts
    expected = loaded.catalog.query({}).counts.series - sum(
        loaded.catalog.query({"label:" + k: v}).counts.series
        for k, v in (("malignant", "1"), ("gleason", "3+4"))
    )
    assert whole.patients == 1 and 0 < whole.series <= expected


def test_reimport_is_idempotent_and_corrections_replace(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    patient = sorted(originals[1])[0]
    rows = [{"patient_id": patient, "kind": "birads", "value": "4", "source": "reader-1"}]
    path = write_csv(tmp_path / "labels.csv", rows)
    loaded.import_labels(path, "synth")
    before = label_rows(loaded)
    again = loaded.import_labels(path, "synth")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    assert label_rows(loaded) == before
    rows[0]["value"] = "5"
    fixed = loaded.import_labels(write_csv(tmp_path / "fixed.csv", rows), "synth")
    assert (fixed.added, fixed.updated) == (0, 1)
    assert [r[4] for r in label_rows(loaded)] == ["5"]
    second_reader = {**rows[0], "source": "reader-2", "value": "3"}
    loaded.import_labels(write_csv(tmp_path / "second.csv", [second_reader]), "synth")
    assert sorted(r[4] for r in label_rows(loaded)) == ["3", "5"]


def test_original_identifiers_are_never_stored(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    rows = [
        {"patient_id": patient, "study_uid": study, "series_uid": series, "kind": "malignant",
         "value": "0"}
        for patient, pairs in originals[1].items()
        for study, series in pairs
    ]  # fmt: skip
    rows.append({"patient_id": "FAKE-9999", "kind": "malignant", "value": "1"})
    result = loaded.import_labels(write_csv(tmp_path / "labels.csv", rows), "synth")
    assert result.added == len(rows) - 1
    loaded.catalog.con.execute("CHECKPOINT")
    stored = b"".join(p.read_bytes() for p in loaded.home.rglob("*") if p.is_file()
                      and "secrets" not in p.parts and p.suffix != ".json")  # fmt: skip
    originals_seen = [
        value
        for row in rows
        for value in (row["patient_id"], row.get("study_uid"), row.get("series_uid"))
        if value and value.encode() in stored
    ]
    assert originals_seen == []
    entry = loaded.audit.entries()[-1]
    assert entry.action == "import-labels" and "FAKE-" not in entry.details


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("isup_grade", "6", "whole number 0-5"),
        ("isup_grade", "2.5", "whole number 0-5"),
        ("gleason", "3-4", r"primary\+secondary"),
        ("malignant", "yes", "0 or 1"),
        ("birads", "7", "whole number 0-6"),
        ("tumour_size", "12", "unknown kind 'tumour_size'"),
        ("diagnosis_text", "x" * 201, "longer than 200"),
    ],
)
def test_value_checks(kind: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_label(kind, value)


def test_invalid_rows_are_reported_by_line_and_nothing_is_written(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    patient = sorted(originals[1])[0]
    good = {"patient_id": patient, "kind": "malignant", "value": "1"}
    loaded.import_labels(write_csv(tmp_path / "first.csv", [good]), "synth")
    before = label_rows(loaded)
    bad = write_csv(
        tmp_path / "bad.csv",
        [
            {**good, "kind": "isup_grade", "value": "2"},
            {**good, "kind": "isup_grade", "value": "9"},
            {**good, "confidence": "1.5"},
            {**good, "patient_id": ""},
        ],
    )
    with pytest.raises(LabelError, match=r"3 invalid row\(s\): line 3: .*line 4: .*line 5"):
        loaded.import_labels(bad, "synth")
    clash = write_csv(tmp_path / "clash.csv", [good, {**good, "value": "0"}])
    with pytest.raises(LabelError, match="lines 2, 3"):
        loaded.import_labels(clash, "synth")
    header = tmp_path / "header.csv"
    header.write_text("patient,kind,value\nFAKE-0001,malignant,1\n", encoding="utf-8")
    with pytest.raises(LabelError, match=r"missing \['patient_id'\], unknown \['patient'\]"):
        loaded.import_labels(header, "synth")
    with pytest.raises(LabelError, match="no collection 'nope'"):
        loaded.import_labels(write_csv(tmp_path / "ok.csv", [good]), "nope")
    assert label_rows(loaded) == before


def test_rows_matching_nothing_are_reported_and_strict_refuses(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    (p1, pairs1), (p2, pairs2), *_ = sorted(originals[1].items())
    path = write_csv(
        tmp_path / "labels.csv",
        [
            {"patient_id": p1, "kind": "malignant", "value": "1"},
            {"patient_id": "FAKE-0404", "kind": "malignant", "value": "1"},
            {"patient_id": p1, "study_uid": pairs2[0][0], "kind": "malignant", "value": "1"},
            {"patient_id": p2, "series_uid": pairs1[0][1], "kind": "malignant", "value": "0"},
        ],
    )
    with pytest.raises(LabelError, match="3 row"):
        loaded.import_labels(path, "synth", strict=True)
    assert label_rows(loaded) == []
    result = loaded.import_labels(path, "synth")
    assert result.added == 1
    assert [(u.line, u.reason) for u in result.unmatched] == [
        (3, "no such patient in the collection"),
        (4, "study not found for this patient"),
        (5, "series not found for this patient and study"),
    ]


def test_slide_labels_follow_the_slide_file(tmp_path: Path) -> None:
    slide = make_slide(tmp_path / "FAKE-SLIDE-0007.svs", "svs", seed=3, width=512, height=512)
    other = make_slide(tmp_path / "FAKE-SLIDE-0008.svs", "svs", seed=4, width=512, height=512)
    make_slide(tmp_path / "FAKE-SLIDE-0009.svs", "svs", seed=5, width=512, height=512)
    with Node.init(tmp_path / "node") as node:
        node.ingest_slides(
            [SlideInput(slide.path, "FAKE-0007", "FAKE-CASE-1"),
             SlideInput(other.path, "FAKE-0007", "FAKE-CASE-1")],
            "biopsies",
        )  # fmt: skip
        rows = [
            {"patient_id": "FAKE-0007", "slide": "FAKE-SLIDE-0007.svs", "study_id": "FAKE-CASE-1",
             "kind": "isup_grade", "value": "3"},
            {"patient_id": "FAKE-0007", "slide": "missing.svs", "kind": "isup_grade", "value": "1"},
            {"patient_id": "FAKE-0007", "slide": "FAKE-SLIDE-0009.svs", "kind": "isup_grade",
             "value": "1"},
        ]  # fmt: skip
        result = node.import_labels(write_csv(tmp_path / "labels.csv", rows), "biopsies")
        assert result.added == 1
        assert [(u.line, u.reason) for u in result.unmatched] == [
            (3, "no such slide file"),
            (4, "slide not catalogued for this patient"),
        ]
        counts = node.catalog.query({"label:isup_grade": "3"}).counts
        assert (counts.patients, counts.series) == (1, 1)
        assert not list(node.store.tmp.iterdir())


def test_cli_imports_and_prints_unmatched_lines(
    loaded: Node, originals: tuple[Path, dict[str, list[tuple[str, str]]]], tmp_path: Path
) -> None:
    home = loaded.home
    loaded.close()
    patient = sorted(originals[1])[0]
    path = write_csv(
        tmp_path / "labels.csv",
        [{"patient_id": patient, "kind": "isup_grade", "value": "4"},
         {"patient_id": "FAKE-0404", "kind": "isup_grade", "value": "1"}],
    )  # fmt: skip
    run = [sys.executable, "-m", "oncofed", "labels", "import", str(path), "-c", "synth",
           "-n", str(home)]  # fmt: skip
    done = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["unmatched"] == [
        {"line": 3, "reason": "no such patient in the collection"}
    ]
    path.write_text("patient_id,kind,value\nFAKE-0001,isup_grade,7\n", encoding="utf-8")
    failed = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "line 2: isup_grade value '7'" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_public_collections_are_labelled_by_their_stored_identifiers(
    tmp_path: Path, originals: tuple[Path, dict[str, list[tuple[str, str]]]]
) -> None:
    patient, pairs = sorted(originals[1].items())[0]
    with Node.init(tmp_path / "node") as node:
        node.ingest([originals[0]], "public", already_deidentified=True, workers=1,
                    show_progress=False)  # fmt: skip
        rows = [{"patient_id": patient, "series_uid": pairs[0][1], "kind": "malignant",
                 "value": "1"}]  # fmt: skip
        result = node.import_labels(write_csv(tmp_path / "labels.csv", rows), "public")
        assert (result.added, result.unmatched) == (1, [])
        matched = node.catalog.matching_series({"label:malignant": "1"})
        assert [(m["patient"], m["series_uid"]) for m in matched] == [(patient, pairs[0][1])]
