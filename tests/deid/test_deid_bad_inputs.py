"""Corrupt, truncated, lying and malformed inputs are quarantined with a clear reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncofed.deid.corpus import write_bad_inputs
from oncofed.deid.profile import DEFAULT_OPTIONS
from oncofed.deid.stage import make_stage
from oncofed.errors import QuarantineError

REASONS = {
    "garbage.dcm": "not a readable DICOM Part-10 file",
    "empty.dcm": "not a readable DICOM Part-10 file",
    "truncated.dcm": "truncated",
    "truncated_header.dcm": "truncated",
    "lying_ts.dcm": "not encoded as its transfer syntax declares",
    "fake_jpeg.dcm": "needs encapsulated pixel data",
    "deep.dcm": "nested deeper than 32 levels",
    "bad_item_length.dcm": "truncated",
    "wrong_vr.dcm": "(0010,0010) PatientName has VR US",
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    assert set(write_bad_inputs(folder)) == set(REASONS)
    return folder


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_input_is_quarantined_with_its_reason(bad: Path, name: str) -> None:
    stage = make_stage(b"k" * 32, DEFAULT_OPTIONS)
    with pytest.raises(QuarantineError) as err:
        stage.apply((bad / name).read_bytes(), str(bad / name))
    assert err.value.code == "quarantined"
    assert str(err.value).startswith(f"{bad / name}: ")
    assert REASONS[name] in str(err.value)
    assert "FAKE" not in str(err.value).replace(str(bad), "")  # reasons never quote values
