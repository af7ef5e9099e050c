"""The fast paths give exactly what the straightforward code gave: encoder, redactor, scan."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from oncofed.deid import verify
from oncofed.deid.corpus import Corpus, generate_corpus
from oncofed.deid.encode import encode, freeze
from oncofed.deid.redact import PATTERNS, Redactor
from oncofed.deid.verify import Needles, scan


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(tmp_path_factory.mktemp("fast"), patients=4, seed=3)


def _meta(ds: pydicom.Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = "1.2.3.4"
    return meta


def test_encoder_writes_what_pydicom_writes(corpus: Corpus) -> None:
    syntaxes = set()
    for planted in corpus.files:
        ours = pydicom.dcmread(planted.path)
        theirs = pydicom.dcmread(planted.path)
        syntaxes.add(str(ours.file_meta.TransferSyntaxUID))
        for ds in (ours, theirs):  # change some values, leave the rest raw
            ds.PatientName = "ANONYMOUS"
            if "ReferencedImageSequence" in ds:
                ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "2.25.1"
        data = encode(ours, _meta(ours))
        theirs.file_meta = _meta(theirs)
        theirs.preamble = b"\0" * 128
        buffer = BytesIO()
        theirs.save_as(buffer, enforce_file_format=True)
        assert data == buffer.getvalue(), planted.path.name
    assert len(syntaxes) >= 3  # implicit, explicit and big-endian at least


def test_simple_values_and_frozen_items_are_written_as_pydicom_writes_them(
    corpus: Corpus,
) -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic"
    frozen = freeze(code)
    for planted in corpus.files:
        ours = pydicom.dcmread(planted.path)
        theirs = pydicom.dcmread(planted.path)
        for ds in (ours, theirs):
            ds.PatientID = "odd"  # LO, padded with a space
            ds.Modality = "MR"  # CS
            ds.StudyDate = "20200102"  # DA
            ds.SOPInstanceUID = "2.25.123"  # UI, padded with a NUL
            ds.StudyDescription = "Ünïcode"  # not ASCII: pydicom encodes it
            ds.Rows = 7  # US
            ds.ReferencedFrameNumber = 70000  # IS, left to pydicom
            ds.add_new(0x00189219, "SS", -3)  # Tag Angle Second Axis
            ds.TextValue = "long text " * 10  # UT
            ds.DeidentificationMethodCodeSequence = [frozen, frozen]
        assert encode(ours, _meta(ours)) == encode(ours, _meta(ours))  # the cached encoding
        theirs.file_meta = _meta(theirs)
        theirs.preamble = b"\0" * 128
        buffer = BytesIO()
        theirs.save_as(buffer, enforce_file_format=True)
        assert encode(ours, _meta(ours)) == buffer.getvalue(), planted.path.name


def _full_regex(identifiers: list[str], text: str) -> str:
    words = sorted({w for w in identifiers if w}, key=len, reverse=True)
    pattern = re.compile("|".join([re.escape(w) for w in words] + list(PATTERNS)), re.IGNORECASE)
    return pattern.sub("*", text)


@pytest.mark.parametrize(
    "text",
    [
        "Nodule stable since 2019-03-04; patient FakePatient001 seen",
        "no identifiers here at all",
        "call +44 20 7946 0123 or mail fake.person@example.org",
        "Mr \u017fmith and the \u212aelvin sign",  # Unicode case folding special cases
        "FAKEMÜLLER007 JÖRGFAKE und FAKEPATIENT001^ALPHA",
        "",
    ],
)
def test_redactor_matches_one_regex_over_all_identifiers(text: str) -> None:
    identifiers = ["FAKEPATIENT001", "ALPHA", "smith", "kelvin", "fakemüller007", "JÖRGFAKE", "x"]
    assert Redactor(identifiers)(text) == _full_regex(identifiers, text)


@pytest.mark.parametrize("padding", [0, verify.DFA_BYTES])  # Hyperscan or not, both automata
def test_scan_gives_the_same_hits_with_every_matcher(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch, padding: int
) -> None:
    needles = Needles(["iso8859"], ["ANONYMOUS"])
    needles.add_name("(0010,0010) PatientName", "FakePatient^Alpha")
    needles.add_text("(0010,0020) PatientID", "FAKEID00007")
    needles.add_dates("(0010,0030) PatientBirthDate", "19700102")
    data = b"xx fakepatient yy" + "FAKEID00007".encode("utf-16-le") + b" 1970-01-02 alpha"
    data += b" FAKEPATIENT again, 19700102 twice"  # later repeats: still the first offsets
    data = bytes(range(256)) * (padding // 256) + data
    fastest = scan(data, needles)
    monkeypatch.setattr(verify, "hyperscan", None)
    rust = scan(data, needles)
    monkeypatch.setattr(verify, "ahocorasick_rs", None)
    fast = scan(data, needles)
    monkeypatch.setattr(verify, "ahocorasick", None)
    slow = scan(data, needles)
    assert fastest == rust == fast == slow
    assert {hit.encoding for hit in slow} == {"latin-1", "utf-16-le"}
    assert scan(Path(corpus.files[0].path).read_bytes()[:10], needles) == []
