"""The synthetic DICOM generators write what their manifests say, deterministically."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian

from oncofed.testing.dicom import (
    IDENTIFYING_KEYWORDS,
    SOP_CLASSES,
    CohortManifest,
    generate_cohort,
    generate_large,
    generate_many_small,
    write_bad_inputs,
)

BODY_PARTS = {
    "CT": {"CHEST", "ABDOMEN", "PELVIS"},
    "MR": {"PROSTATE", "BREAST", "BRAIN"},
    "MG": {"BREAST"},
    "US": {"BREAST"},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortManifest:
    return generate_cohort(tmp_path_factory.mktemp("cohort"), patients=10, seed=7)


def _read_all(files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in files]


def _age(birth: str, on: str) -> int:
    born = dt.datetime.strptime(birth, "%Y%m%d").date()
    day = dt.datetime.strptime(on, "%Y%m%d").date()
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def test_files_read_back_with_the_right_sop_class_and_attributes(cohort: CohortManifest) -> None:
    for path, ds in zip(cohort.files, _read_all(cohort.files), strict=True):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == SOP_CLASSES[ds.Modality] == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.BodyPartExamined in BODY_PARTS[ds.Modality]
        assert ds.PatientSex in {"M", "F"}
        assert ds.InstitutionName == "SYNTH-SITE-A"
        assert ds.Manufacturer and ds.ManufacturerModelName.startswith(ds.Manufacturer.split()[0])
        assert ds.StudyDescription and ds.SeriesDescription
        assert int(ds.PatientAge.removesuffix("Y")) == _age(ds.PatientBirthDate, ds.StudyDate)
        assert 20710101 <= int(ds.StudyDate) <= 20791231
        assert path.parts[-4] == ds.PatientID
        assert path.name == f"{ds.InstanceNumber}.dcm"
        assert ds.pixel_array.shape[:2] == (64, 64)


def test_modality_specific_attributes(cohort: CohortManifest) -> None:
    datasets = _read_all(cohort.files)
    assert {ds.Modality for ds in datasets} == set(SOP_CLASSES)
    for ds in datasets:
        if ds.Modality in {"CT", "MR"}:
            assert ds.FrameOfReferenceUID and len(ds.ImagePositionPatient) == 3
        if ds.Modality in {"MG", "US"} or ds.BodyPartExamined == "BREAST":
            assert ds.PatientSex == "F"
        if ds.BodyPartExamined == "PROSTATE":
            assert ds.PatientSex == "M"
        if ds.Modality == "MG":
            assert ds.PresentationIntentType == "FOR PRESENTATION"
            assert ds.ImageLaterality in {"L", "R"}
        if ds.Modality == "US":
            assert ds.PhotometricInterpretation in {"RGB", "MONOCHROME2"}
            assert ds.SequenceOfUltrasoundRegions[0].RegionLocationMaxX1 == ds.Columns - 1
            assert ds.pixel_array.shape == ((64, 64, 3) if ds.SamplesPerPixel == 3 else (64, 64))


def test_manifest_counts_equal_a_recount_of_the_files(cohort: CohortManifest) -> None:
    datasets = _read_all(cohort.files)
    out_dir = cohort.files[0].parents[3]
    assert sorted(out_dir.rglob("*.dcm")) == sorted(cohort.files)
    assert cohort.patients == len({ds.PatientID for ds in datasets}) == 10
    assert cohort.studies == len({ds.StudyInstanceUID for ds in datasets})
    assert cohort.series == len({ds.SeriesInstanceUID for ds in datasets})
    assert cohort.instances == len({ds.SOPInstanceUID for ds in datasets}) == len(cohort.files)
    assert cohort.bytes == sum(path.stat().st_size for path in cohort.files)
    modality_of_series = {ds.SeriesInstanceUID: ds.Modality for ds in datasets}
    assert cohort.by_modality == dict(Counter(modality_of_series.values()))
    assert set(cohort.identifiers) == set(cohort.files)


def test_hierarchy_sizes_are_within_the_promised_ranges(cohort: CohortManifest) -> None:
    datasets = _read_all(cohort.files)
    studies_per_patient = Counter(
        patient for patient, _ in {(ds.PatientID, ds.StudyInstanceUID) for ds in datasets}
    )
    series_per_study = Counter(
        study for study, _ in {(ds.StudyInstanceUID, ds.SeriesInstanceUID) for ds in datasets}
    )
    instances_per_series = Counter(ds.SeriesInstanceUID for ds in datasets)
    assert set(studies_per_patient.values()) <= {1, 2, 3}
    assert set(series_per_study.values()) <= {1, 2, 3}
    assert set(instances_per_series.values()) <= set(range(1, 7))


def test_planted_identifiers_appear_in_the_file_bytes(cohort: CohortManifest) -> None:
    for path, values in cohort.identifiers.items():
        data = path.read_bytes()
        assert len(values) >= len(IDENTIFYING_KEYWORDS) - 1  # only CT/MR have a frame of ref.
        for value in values:
            assert value.encode() in data, (path, value)


def test_identifying_values_are_obviously_fake(cohort: CohortManifest) -> None:
    ds = pydicom.dcmread(cohort.files[0])
    assert str(ds.PatientName).startswith("FAKE^PATIENT")
    assert ds.PatientID.startswith("FAKE-")
    assert ds.AccessionNumber.startswith("FAKEACC")
    assert ds.ReferringPhysicianName == "FAKE^DOCTOR"
    assert ds.InstitutionAddress == "1 Fake Street, Nowhere"


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    first = generate_cohort(tmp_path / "a", patients=3, seed=11)
    second = generate_cohort(tmp_path / "b", patients=3, seed=11)
    assert [p.relative_to(tmp_path / "a") for p in first.files] == [
        p.relative_to(tmp_path / "b") for p in second.files
    ]
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_different_seeds_give_different_uids(tmp_path: Path) -> None:
    def uids(manifest: CohortManifest) -> set[str]:
        return {
            uid
            for ds in _read_all(manifest.files)
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        }

    first = generate_cohort(tmp_path / "a", patients=3, seed=1)
    second = generate_cohort(tmp_path / "b", patients=3, seed=2)
    assert uids(first).isdisjoint(uids(second))


def test_modalities_and_site_are_honoured(tmp_path: Path) -> None:
    manifest = generate_cohort(
        tmp_path, patients=4, modalities=("MG",), site="SYNTH-SITE-B", rows=15, columns=17
    )
    datasets = _read_all(manifest.files)
    assert set(manifest.by_modality) == {"MG"}
    assert {ds.PatientSex for ds in datasets} == {"F"}
    assert {ds.InstitutionName for ds in datasets} == {"SYNTH-SITE-B"}
    assert len({ds.Manufacturer for ds in datasets}) <= 2  # a site has two vendors
    assert all(ds.pixel_array.shape == (15, 17) for ds in datasets)


def test_odd_sized_colour_ultrasound_reads_back(tmp_path: Path) -> None:
    manifest = generate_cohort(tmp_path, patients=6, modalities=("US",), rows=5, columns=7)
    for ds in _read_all(manifest.files):
        assert ds.pixel_array.shape[:2] == (5, 7)


def test_unknown_modality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="XA"):
        generate_cohort(tmp_path, modalities=("CT", "XA"))


def test_generate_many_small(tmp_path: Path) -> None:
    paths = generate_many_small(tmp_path, 2000, seed=3)
    assert len(paths) == len(set(paths)) == 2000
    assert sorted(tmp_path.rglob("*.dcm")) == sorted(paths)
    series = Counter(path.parent for path in paths)
    assert len(series) == 20 and set(series.values()) == {100}
    sample = _read_all(paths[::97])
    assert len({ds.SOPInstanceUID for ds in sample}) == len(sample)
    assert {ds.Modality for ds in sample} == set(SOP_CLASSES)
    for ds in sample:
        assert ds.SOPClassUID == SOP_CLASSES[ds.Modality]
        assert ds.pixel_array.size > 0


def test_generate_many_small_is_deterministic_and_stops_at_count(tmp_path: Path) -> None:
    first = generate_many_small(tmp_path / "a", 130, seed=5)
    second = generate_many_small(tmp_path / "b", 130, seed=5)
    assert len(first) == 130
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_generate_large_writes_enhanced_ct(tmp_path: Path) -> None:
    paths = generate_large(tmp_path, 2, frames=5, rows=32, columns=48)
    assert len(paths) == 2
    for ds in _read_all(paths):
        assert ds.SOPClassUID == EnhancedCTImageStorage
        assert ds.NumberOfFrames == 5
        assert len(ds.PerFrameFunctionalGroupsSequence) == 5
        assert ds.pixel_array.shape == (5, 32, 48)


def test_bad_inputs_that_pydicom_refuses(tmp_path: Path) -> None:
    bad = write_bad_inputs(tmp_path)
    assert bad["empty"].stat().st_size == 0
    assert bad["garbage_after_preamble"].read_bytes()[128:132] == b"DICM"
    for kind in ("not_dicom", "empty", "truncated", "garbage_after_preamble"):
        with pytest.raises(Exception):  # noqa: B017 - pydicom raises several types
            pydicom.dcmread(bad[kind])


def test_bad_inputs_that_pydicom_reads(tmp_path: Path) -> None:
    bad = write_bad_inputs(tmp_path)
    truncated = pydicom.dcmread(bad["truncated_pixel_data"])
    with pytest.raises(ValueError, match="less than expected"):
        _ = truncated.pixel_array
    no_sop = pydicom.dcmread(bad["no_sop_uid"])
    assert bad["no_sop_uid"].read_bytes()[128:132] == b"DICM"
    assert "SOPInstanceUID" not in no_sop
    assert "MediaStorageSOPInstanceUID" not in no_sop.file_meta


def test_preambleless_input_is_valid_with_force(tmp_path: Path) -> None:
    path = write_bad_inputs(tmp_path)["preambleless_valid"]
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(path)
    ds = pydicom.dcmread(path, force=True)
    assert ds.SOPInstanceUID and ds.SOPClassUID == SOP_CLASSES["MG"]
    assert str(ds.PatientName).startswith("FAKE^PATIENT")
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
