"""De-identified copies: no planted identifier in the bytes, no label/macro, tiles unchanged."""

from __future__ import annotations

from pathlib import Path

import openslide
import pydicom
import pytest
import tifffile
from typer.testing import CliRunner

from conftest import files_of
from oncofed.testing.wsi import SyntheticSlide
from oncofed.wsi.cli import app
from oncofed.wsi.deid import deidentify_slide, find_identifiers
from oncofed.wsi.errors import SlideDeidError, UnsupportedSlideError
from oncofed.wsi.open import open_slide


def _out(tmp_path: Path, s: SyntheticSlide) -> Path:
    return tmp_path / ("deid" if s.kind == "dicom" else f"deid{s.path.suffix}")


def test_output_bytes_hold_no_planted_identifier(tmp_path: Path, slide: SyntheticSlide) -> None:
    planted = slide.identifiers.all()
    assert any(find_identifiers(f, planted) for f in files_of(slide.path))
    out = _out(tmp_path, slide)
    if slide.kind == "mirax":  # a folder of proprietary files: refused in place, clearly
        with pytest.raises(SlideDeidError, match="--to-dicom"):
            deidentify_slide(slide.path, out)
        assert not out.exists()
        return
    report = deidentify_slide(slide.path, out)  # identifiers found in the slide itself
    for file in files_of(out):
        assert find_identifiers(file, planted) == []
    associated = {"tiff": [], "ndpi": ["macro"]}.get(slide.kind, ["label", "macro"])
    assert sorted(report.removed_images) == associated
    with open_slide(out) as s:
        assert not {"label", "macro"} & set(s.associated_names)
        assert s.dimensions == (slide.width, slide.height)
        assert s.mpp == pytest.approx((slide.mpp, slide.mpp))


def test_svs_keeps_tiles_and_scan_facts(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    src = slides["svs"].path
    out = tmp_path / "deid.svs"
    deidentify_slide(src, out)
    with openslide.OpenSlide(out) as osr:  # independent reader
        assert osr.properties["openslide.vendor"] == "aperio"
        assert set(osr.associated_images) == {"thumbnail"}
        assert osr.properties["aperio.AppMag"] == "40"
        assert "aperio.Filename" not in osr.properties and "aperio.Date" not in osr.properties
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        assert len(b.pages) == len(a.pages) - 2
        pa, pb = a.pages[0], b.pages[0]
        for i in (0, len(pa.dataoffsets) - 1):
            a.filehandle.seek(pa.dataoffsets[i])
            b.filehandle.seek(pb.dataoffsets[i])
            size = pa.databytecounts[i]
            assert a.filehandle.read(size) == b.filehandle.read(size)
        assert "DateTime" not in b.pages[0].tags or not b.pages[0].tags["DateTime"].value


def test_dicom_drops_label_and_overview(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    out = tmp_path / "deid"
    deidentify_slide(slides["dicom"].path, out)
    types = set()
    for file in out.iterdir():
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        types.add(ds.ImageType[2])
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName) == "" and ds.get("StudyDate", "") == ""
    assert types == {"VOLUME", "THUMBNAIL"}


def test_caller_identifiers_are_checked(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    out = tmp_path / "x.svs"
    with pytest.raises(SlideDeidError, match="still contains"):
        deidentify_slide(slides["svs"].path, out, identifiers=["Aperio Image Library"])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_refuses_existing_output_and_bad_input(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    existing = tmp_path / "exists.svs"
    existing.write_bytes(b"")
    with pytest.raises(SlideDeidError, match="exists"):
        deidentify_slide(slides["svs"].path, existing)
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    with pytest.raises(UnsupportedSlideError):
        deidentify_slide(bad, tmp_path / "out.svs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.svs", "exists.svs"]


def test_cli_names_outputs_by_content_hash(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deid", str(slides["svs"].path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (written,) = out.iterdir()
    assert written.suffix == ".svs" and "FAKE" not in written.name and len(written.stem) == 32
