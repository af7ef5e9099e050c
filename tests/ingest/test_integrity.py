"""Truncation detection on real files: pydicom's own test corpus and every cut of a file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from oncofed.errors import IngestError
from oncofed.ingest.integrity import check_complete
from oncofed.ingest.parse import parse_instance

TEST_FILES = Path(str(get_testdata_file("CT_small.dcm"))).parent
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}
# Complete files that lack an instance UID oncofed requires (they are fragments, not instances).
NOT_INSTANCES = {
    "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jls_lossy_sample.dcm", "UN_sequence.dcm", "empty_charset_LEI.dcm",
    "meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm", "no_meta.dcm", "no_meta_group_length.dcm",
    "priv_SQ.dcm",
}  # fmt: skip
DIGEST = "0" * 64


@pytest.mark.parametrize("path", sorted(TEST_FILES.glob("*.dcm")), ids=lambda p: p.name)
def test_pydicom_corpus_is_judged_correctly(path: Path) -> None:
    raw = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.name in TRUNCATED:
            with pytest.raises(IngestError, match="data ends inside"):
                parse_instance(raw, DIGEST)
        elif path.name in NOT_INSTANCES:
            with pytest.raises(IngestError, match=r"missing required attribute|not DICOM"):
                parse_instance(raw, DIGEST)
        else:
            assert parse_instance(raw, DIGEST).size == len(raw)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"])
def test_every_cut_of_an_image_is_refused(name: str) -> None:
    raw = Path(str(get_testdata_file(name))).read_bytes()
    accepted = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cut in range(0, len(raw), 3):
            try:
                parse_instance(raw[:cut], DIGEST)
            except IngestError:
                continue
            accepted.append(cut)
    assert accepted == []


def test_a_cut_inside_a_nested_sequence_is_refused() -> None:
    raw = Path(str(get_testdata_file("rtplan.dcm"))).read_bytes()
    cut = raw[:1500]  # inside the beam sequence
    with pytest.raises(IngestError, match="data ends inside"):
        parse_instance(cut, DIGEST)


def test_64_bit_values_have_4_byte_lengths() -> None:
    """SV and UV elements carry a reserved field and a 4-byte length (PS3.5 Table 7.1-1): a
    walk reading a 2-byte length there would lose its place and call the file cut short."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "2.25.1"
    ds.add_new(0x00091010, "SV", [-(2**40), 7])
    ds.add_new(0x00091011, "UV", [2**50])
    ds.PatientID = "FAKE-SV"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    assert 0x00100020 in check_complete(buffer.getvalue(), implicit_vr=False, little_endian=True)
