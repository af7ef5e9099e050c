"""DICOM-WSI normalisation: same levels, same JPEG tile bytes, no identifiers after de-id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from typer.testing import CliRunner

from oncofed.testing.wsi import SyntheticSlide
from oncofed.wsi.cli import app
from oncofed.wsi.convert import SlideConversionError, convert_to_dicom
from oncofed.wsi.deid import deidentify_slide, find_identifiers
from oncofed.wsi.dicomizer import import_wsidicomizer
from oncofed.wsi.open import open_slide

TIFF_KINDS = ["svs", "tiff", "ome"]


def _level0_tiles(path: Path) -> list[bytes]:
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[0].keyframe
        out = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            tif.filehandle.seek(offset)
            out.append(tif.filehandle.read(count))
        return out


def _assert_same_pyramid(src: Path, dicom: Path) -> None:
    """Same levels; level-0 JPEG tiles byte-identical (DICOM pads odd fragments); same pixels."""
    from wsidicom import WsiDicom

    with open_slide(src) as a, open_slide(dicom) as b:
        assert [(lv.width, lv.height) for lv in a.levels] == [
            (lv.width, lv.height) for lv in b.levels
        ]
        assert b.format == "dicom-wsi"
        assert b.mpp == pytest.approx(a.mpp)
        for level in range(len(a.levels)):
            assert np.array_equal(a.read_level(level), b.read_level(level))
        cols = -(-a.levels[0].width // a.levels[0].tile_width)
    with WsiDicom.open(dicom) as wsi:
        for i, raw in enumerate(_level0_tiles(src)):
            tile = wsi.read_encoded_tile(0, (i % cols, i // cols))
            assert tile[: len(raw)] == raw and len(tile) - len(raw) <= 1


@pytest.mark.parametrize("kind", TIFF_KINDS)
def test_convert_keeps_levels_and_tile_bytes(
    tmp_path: Path, slides: dict[str, SyntheticSlide], kind: str
) -> None:
    src = slides[kind].path
    files = convert_to_dicom(src, tmp_path / "dcm", uid_source="seed")
    assert files and all(f.parent == tmp_path / "dcm" for f in files)
    _assert_same_pyramid(src, tmp_path / "dcm")
    with open_slide(tmp_path / "dcm") as s:
        if kind != "tiff":
            assert {"label", "macro"} <= set(s.associated_names)


@pytest.mark.parametrize("kind", TIFF_KINDS)
def test_deid_to_dicom_has_no_identifiers(
    tmp_path: Path, slides: dict[str, SyntheticSlide], kind: str
) -> None:
    slide = slides[kind]
    out = tmp_path / "deid"
    report = deidentify_slide(slide.path, out, to_dicom=True, uid_source="x")
    assert report.format == "dicom-wsi" and report.identifiers_checked > 0
    for file in out.iterdir():
        assert find_identifiers(file, slide.identifiers.all()) == []
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.ImageType[2] not in ("LABEL", "OVERVIEW")
    if kind != "tiff":
        assert report.removed_images == ["label", "macro"]
    with open_slide(out) as s:
        assert not {"label", "macro"} & set(s.associated_names)
    _assert_same_pyramid(slide.path, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deid"]  # no work files left


def test_ndpi_converts_its_stored_levels(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    """NDPI levels are single JPEG strips cut into tiles at restart markers: the DICOM copy has the
    stored levels (not OpenSlide's extra JPEG-scaled ones), the macro image, the same pixels."""
    slide = slides["ndpi"]
    convert_to_dicom(slide.path, tmp_path / "dcm", uid_source="seed")
    with open_slide(slide.path) as a, open_slide(tmp_path / "dcm") as b:
        assert [(lv.width, lv.height) for lv in b.levels] == list(slide.level_dimensions)
        assert set(b.associated_names) == {"macro"}
        assert b.mpp == pytest.approx((slide.mpp, slide.mpp))
        for level, (width, _) in enumerate(slide.level_dimensions):
            source = next(i for i, lv in enumerate(a.levels) if lv.width == width)
            assert np.array_equal(a.read_level(source), b.read_level(level))
    out = tmp_path / "deid"
    report = deidentify_slide(slide.path, out, to_dicom=True, uid_source="x")
    assert report.removed_images == ["macro"]
    for file in out.iterdir():
        assert find_identifiers(file, slide.identifiers.all()) == []


def test_mirax_is_deidentified_through_dicom(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    """MIRAX cannot be edited in place: the DICOM-WSI copy is made without label and macro,
    checked for every identifier in Slidedat.ini, and keeps levels and (re-encoded) pixels."""
    slide = slides["mirax"]
    out = tmp_path / "deid"
    report = deidentify_slide(slide.path, out, to_dicom=True, uid_source="x")
    assert report.removed_images == ["label", "macro"] and report.identifiers_checked > 0
    for file in out.iterdir():
        assert find_identifiers(file, slide.identifiers.all()) == []
    with open_slide(slide.path) as a, open_slide(out) as b:
        assert [(lv.width, lv.height) for lv in b.levels] == list(slide.level_dimensions)
        assert not b.associated_names
        source, copy = a.read_level(1).astype(int), b.read_level(1).astype(int)
        assert np.abs(source - copy).mean() < 3  # decoded and re-encoded as JPEG


def test_uid_source_makes_uids_reproducible(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    def uids(folder: Path) -> set[str]:
        return {
            str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
            for f in folder.iterdir()
        }

    src = slides["ome"].path
    convert_to_dicom(src, tmp_path / "a", uid_source="slide-1")
    convert_to_dicom(src, tmp_path / "b", uid_source="slide-1")
    convert_to_dicom(src, tmp_path / "c", uid_source="slide-2")
    assert uids(tmp_path / "a") == uids(tmp_path / "b")
    assert not uids(tmp_path / "a") & uids(tmp_path / "c")
    assert all(u.startswith("2.25.") for u in uids(tmp_path / "a"))


def test_convert_is_atomic(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    src = slides["svs"].path
    (tmp_path / "taken").mkdir()
    with pytest.raises(SlideConversionError, match="exists"):
        convert_to_dicom(src, tmp_path / "taken")
    with pytest.raises(SlideConversionError, match="already a DICOM-WSI"):
        convert_to_dicom(slides["dicom"].path, tmp_path / "x")

    def broken() -> str:
        raise RuntimeError("uid service down")

    with pytest.raises(SlideConversionError, match="uid service down"):
        convert_to_dicom(src, tmp_path / "out", uid_source=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_cli_convert_and_deid_to_dicom(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    src = slides["svs"].path
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(src), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "c").iterdir()
    assert folder.is_dir() and len(folder.name) == 32
    result = runner.invoke(app, ["deid", str(src), "--to-dicom", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "d").iterdir()
    assert "FAKE" not in folder.name
    for file in folder.iterdir():
        assert find_identifiers(file, slides["svs"].identifiers.all()) == []


def test_import_wsidicomizer_leaves_pydicom_config_alone() -> None:
    import_wsidicomizer()  # already imported in this process: nothing may change either
    code = (
        "from pydicom import config\n"
        "def snap():\n"
        "    s = config.settings\n"
        "    return (config.enforce_valid_values, config._use_future,\n"
        "            config.INVALID_KEYWORD_BEHAVIOR, s.reading_validation_mode,\n"
        "            s.writing_validation_mode)\n"
        "before = snap()\n"
        "from oncofed.wsi.dicomizer import import_wsidicomizer\n"
        "import_wsidicomizer()\n"
        "assert snap() == before, (snap(), before)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
