"""The de-identification stage on the planted-PHI corpus: bytes, references, dates, pixels."""

from __future__ import annotations

import datetime
import pickle
import re
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from oncofed.deid import verify
from oncofed.deid.corpus import SAFE_PRIVATE, Corpus, Planted, generate_corpus
from oncofed.deid.profile import DEFAULT_OPTIONS
from oncofed.deid.stage import DeidStage, make_stage
from oncofed.errors import QuarantineError

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
OPTIONS = (*DEFAULT_OPTIONS, "retain-safe-private")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(tmp_path_factory.mktemp("corpus"), patients=4, seed=7)


@pytest.fixture(scope="module")
def stage() -> DeidStage:
    return make_stage(KEY, OPTIONS, SAFE_PRIVATE)


@pytest.fixture(scope="module")
def outputs(corpus: Corpus, stage: DeidStage) -> dict[Path, bytes]:
    return {f.path: stage.apply(f.path.read_bytes(), str(f.path)) for f in corpus.files}


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(BytesIO(data))


def _encodings(value: str) -> list[bytes]:
    found = []
    for variant in (value, value.upper(), value.lower()):
        for encoding in ("ascii", "latin-1", "utf-8", "utf-16-le", "utf-16-be", "iso2022_jp"):
            try:
                found.append(variant.encode(encoding))
            except UnicodeEncodeError:
                continue
    return found


def _by(corpus: Corpus, modality: str, patient: int = 0) -> Planted:
    patients = sorted({f.patient for f in corpus.files})
    return next(
        f for f in corpus.files if f.modality == modality and f.patient == patients[patient]
    )


def test_no_planted_value_survives_in_any_output_byte(
    corpus: Corpus, outputs: dict[Path, bytes]
) -> None:
    assert len(outputs) == len(corpus.files) == 4 * 2 * 6
    for planted in corpus.files:
        data = outputs[planted.path]
        for value in planted.values:
            for pattern in _encodings(value):
                assert pattern not in data, f"{value!r} leaked into {planted.path.name}"


def test_outputs_are_valid_and_marked_deidentified(
    corpus: Corpus, outputs: dict[Path, bytes]
) -> None:
    for planted in corpus.files:
        ds = _read(outputs[planted.path])
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("ANON")
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert {"113107", "113101", "113105", "113111"} <= codes
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.preamble == b"\0" * 128
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert 0x00091010 not in ds and 0x00091011 not in ds  # identifying private tags
        assert 0x00111001 in ds and 0x00110010 in ds  # listed as safe: kept with its creator
        if "PixelData" in ds:
            assert ds.pixel_array.shape[0] == ds.Rows


def test_uid_references_stay_consistent_across_files_and_nested_sequences(
    corpus: Corpus, outputs: dict[Path, bytes]
) -> None:
    by_folder: dict[Path, list[Dataset]] = {}
    for planted in corpus.files:
        by_folder.setdefault(planted.path.parent, []).append(_read(outputs[planted.path]))
    for datasets in by_folder.values():
        images = {str(ds.SOPInstanceUID): ds for ds in datasets if ds.Modality in ("CT", "MR")}
        report = next(ds for ds in datasets if ds.Modality == "SR")
        assert len({str(ds.StudyInstanceUID) for ds in datasets}) == 1
        assert {str(ds.FrameOfReferenceUID) for ds in images.values()}.__len__() == 1
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == report.StudyInstanceUID
        series = evidence.ReferencedSeriesSequence[0]
        assert {str(ds.SeriesInstanceUID) for ds in images.values()} == {series.SeriesInstanceUID}
        referenced = {str(item.ReferencedSOPInstanceUID) for item in series.ReferencedSOPSequence}
        assert referenced == set(images)
        for ds in images.values():
            if "ReferencedImageSequence" in ds:
                assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID in images


def _date(text: str) -> datetime.date:
    return datetime.datetime.strptime(text[:8], "%Y%m%d").date()


def test_dates_shift_per_patient_and_keep_intervals(
    corpus: Corpus, outputs: dict[Path, bytes]
) -> None:
    for index in range(4):
        planted = [
            f
            for f in corpus.files
            if f.modality == "SR" and f.patient == _by(corpus, "SR", index).patient
        ]
        originals = [pydicom.dcmread(f.path) for f in planted]
        shifted = [_read(outputs[f.path]) for f in planted]
        gap_in = _date(originals[1].StudyDate) - _date(originals[0].StudyDate)
        gap_out = _date(shifted[1].StudyDate) - _date(shifted[0].StudyDate)
        assert gap_in == gap_out
        offset = _date(shifted[0].StudyDate) - _date(originals[0].StudyDate)
        assert -3650 <= offset.days <= -365
        deep = shifted[0].ContentSequence
        for _ in range(5):
            deep = deep[2].ContentSequence
        assert _date(deep[1].ObservationDateTime) - _date(originals[0].StudyDate) == offset
        assert shifted[0].AcquisitionDateTime.endswith("101502.000000")
        assert shifted[0].PatientBirthDate == ""  # Z in Table E.1-1 even with modified dates


def test_descriptors_and_structured_text_are_redacted_not_dropped(
    corpus: Corpus, outputs: dict[Path, bytes]
) -> None:
    ds = _read(outputs[_by(corpus, "SR").path])
    assert ds.StudyDescription == "CT CHEST * FOLLOW-UP"
    assert ds.ContentSequence[0].TextValue == "Nodule stable since *; patient *"
    assert ds.ContentSequence[1].PersonName == "ANONYMOUS"


def test_pseudonyms_link_runs_with_the_same_key_only(corpus: Corpus) -> None:
    first, second = _by(corpus, "CT"), _by(corpus, "MR")  # same patient, other study
    again = make_stage(KEY, OPTIONS, SAFE_PRIVATE)
    other = make_stage(OTHER_KEY, OPTIONS, SAFE_PRIVATE)
    one = _read(again.apply(first.path.read_bytes(), "a"))
    two = _read(again.apply(second.path.read_bytes(), "b"))
    foreign = _read(other.apply(first.path.read_bytes(), "c"))
    assert one.PatientID == two.PatientID
    assert foreign.PatientID != one.PatientID
    assert foreign.SOPInstanceUID != one.SOPInstanceUID
    assert foreign.StudyDate != one.StudyDate or foreign.PatientID != one.PatientID


def test_burned_in_text_is_masked(corpus: Corpus, outputs: dict[Path, bytes]) -> None:
    for modality in ("US", "SC"):
        for index in range(4):
            planted = _by(corpus, modality, index)
            assert planted.burned_box is not None
            y0, y1, x0, x1 = planted.burned_box
            before = pydicom.dcmread(planted.path).pixel_array
            after = _read(outputs[planted.path])
            pixels = after.pixel_array
            assert (before[y0:y1, x0:x1] == 255).any()
            assert not (pixels[y0:y1, x0:x1] == 255).any(), f"{modality} text not masked"
            assert after.BurnedInAnnotation == "NO"
            assert np.mean(pixels == before) > 0.5  # the image itself survives


def test_burned_in_annotation_without_the_pixel_option_is_quarantined(corpus: Corpus) -> None:
    stage = make_stage(KEY, ["retain-dates"])
    planted = _by(corpus, "SC")
    with pytest.raises(QuarantineError, match="burned-in annotation"):
        stage.apply(planted.path.read_bytes(), str(planted.path))


def test_verification_quarantines_a_leak_without_naming_the_value(corpus: Corpus) -> None:
    planted = _by(corpus, "CT")
    ds = pydicom.dcmread(planted.path)
    ds.Manufacturer = str(ds.PatientID)  # an attribute the profile keeps
    buffer = BytesIO()
    ds.save_as(buffer)
    stage = make_stage(KEY, OPTIONS)
    with pytest.raises(QuarantineError, match=r"identifying values remain.*\(0010,0020\)") as err:
        stage.apply(buffer.getvalue(), "leaky.dcm")
    assert str(ds.PatientID) not in str(err.value)
    assert str(err.value).startswith("leaky.dcm: ")


def test_placeholder_values_do_not_quarantine(corpus: Corpus) -> None:
    planted = _by(corpus, "CT")
    ds = pydicom.dcmread(planted.path)
    ds.OtherPatientIDs = "Unknown"  # an identifying attribute holding a placeholder...
    ds.Manufacturer = "Unknown"  # ...and a kept attribute holding the same word
    buffer = BytesIO()
    ds.save_as(buffer)
    out = make_stage(KEY, OPTIONS).apply(buffer.getvalue(), "placeholder.dcm")
    assert b"Unknown" in out


def test_stage_pickles_for_worker_processes(corpus: Corpus, stage: DeidStage) -> None:
    copy = pickle.loads(pickle.dumps(stage))
    planted = _by(corpus, "CT")
    assert copy.apply(planted.path.read_bytes(), "x") == stage.apply(planted.path.read_bytes(), "x")


def test_basic_profile_without_options_removes_dates_and_descriptors(corpus: Corpus) -> None:
    planted = _by(corpus, "SR")
    ds = _read(make_stage(KEY).apply(planted.path.read_bytes(), "x"))
    assert ds.StudyDate == "" and "StudyDescription" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert 0x00111001 not in ds  # no private attribute without retain-safe-private


MATCHERS = {
    "hyperscan": (),
    "ahocorasick_rs": ("hyperscan",),
    "pyahocorasick": ("hyperscan", "ahocorasick_rs"),
    "bytes.find": ("hyperscan", "ahocorasick_rs", "ahocorasick"),
}


@pytest.mark.parametrize("matcher", list(MATCHERS))
@pytest.mark.parametrize(
    ("where", "label"), [("pixel data", "(0010,0020)"), ("safe private element", "(0010,0030)")]
)
def test_verification_finds_a_value_planted_in_pixels_or_kept_private_data(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch, matcher: str, where: str, label: str
) -> None:
    for disabled in MATCHERS[matcher]:
        monkeypatch.setattr(verify, disabled, None)
    if matcher == "hyperscan":
        assert verify.hyperscan is not None, "hyperscan is a dependency on Linux x86-64"
        monkeypatch.setattr(verify, "DFA_BYTES", 0)  # the test instance is small
    ds = pydicom.dcmread(_by(corpus, "CT").path)
    if where == "pixel data":  # lower-cased, UTF-16-BE, at the end of the file's last element
        leak = str(ds.PatientID).lower().encode("utf-16-be")
        pixels = bytearray(ds.PixelData)
        pixels[-len(leak) :] = leak
        ds.PixelData = bytes(pixels)
    else:  # the birth date in an attribute the safe-private option keeps
        ds[0x00111001].value = str(ds.PatientBirthDate)
    buffer = BytesIO()
    ds.save_as(buffer)
    stage = make_stage(KEY, OPTIONS, SAFE_PRIVATE)
    with pytest.raises(QuarantineError, match=f"identifying values remain.*{re.escape(label)}"):
        stage.apply(buffer.getvalue(), "leaky.dcm")
