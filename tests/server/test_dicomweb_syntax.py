"""Reading a blob's transfer syntax from its first bytes agrees with pydicom."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_files
from pydicom.filereader import read_file_meta_info

from oncofed.server.dicomweb_wado import META_BYTES, stored_syntax, syntax_in


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "MR_small_bigendian.dcm",
        "rtplan.dcm",
        "image_dfl.dcm",
    ],
)
def test_the_syntax_read_from_the_start_is_pydicoms(name: str) -> None:
    (path,) = get_testdata_files(name)
    expected = str(read_file_meta_info(path).TransferSyntaxUID)
    assert syntax_in(Path(path).read_bytes()[:META_BYTES]) == expected


def test_an_unusual_start_is_left_to_pydicom(tmp_path: Path) -> None:
    (source,) = get_testdata_files("CT_small.dcm")
    head = Path(source).read_bytes()
    assert syntax_in(head[:140]) is None  # cut short inside the file meta information
    assert syntax_in(b"\0" * 128 + b"NOPE" + head[132:]) is None
    moved = tmp_path / "moved.dcm"
    moved.write_bytes(head)
    assert stored_syntax(moved) == str(read_file_meta_info(source).TransferSyntaxUID)
