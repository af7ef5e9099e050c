"""Truncation detection on real files: pydicom's own test corpus and every cut of a file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from oncofed.errors import IngestError
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
