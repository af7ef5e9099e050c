"""Opening synthetic slides of every format, checked against independent readers; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from typer.testing import CliRunner
from wsidicom import WsiDicom

from oncofed.testing.wsi import SyntheticSlide, make_slide
from oncofed.wsi.cli import app
from oncofed.wsi.errors import CorruptSlideError, NoPyramidError, UnsupportedSlideError
from oncofed.wsi.metadata import read_metadata
from oncofed.wsi.open import open_slide

FORMATS = {
    "svs": "aperio",
    "tiff": "generic-tiff",
    "ome": "ome-tiff",
    "dicom": "dicom-wsi",
    "ndpi": "hamamatsu",
    "mirax": "mirax",
}


def _independent_region(s: SyntheticSlide, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Level-0 region read without oncofed: openslide for TIFF/SVS, tifffile, or wsidicom."""
    if s.kind == "dicom":
        with WsiDicom.open(s.path) as wsi:
            return np.asarray(wsi.read_region((x, y), 0, (w, h)).convert("RGB"))
    if s.kind in ("ome", "ndpi"):  # tifffile decodes NDPI strips without OpenSlide
        with tifffile.TiffFile(s.path) as tif:
            return tif.series[0].levels[0].asarray()[y : y + h, x : x + w]
    with openslide.OpenSlide(s.path) as osr:
        return np.asarray(osr.read_region((x, y), 0, (w, h)).convert("RGB"))


def test_reads_every_format_like_an_independent_reader(slide: SyntheticSlide) -> None:
    with open_slide(slide.path) as s:
        assert s.format == FORMATS[slide.kind]
        assert s.dimensions == (slide.width, slide.height)
        assert s.mpp == pytest.approx((slide.mpp, slide.mpp))
        levels = [(lv.width, lv.height) for lv in s.levels]
        if slide.kind == "ndpi":  # stored levels, plus levels decoded at JPEG scales between them
            assert set(slide.level_dimensions) <= set(levels) and levels[-1] < (64, 64)
        else:
            assert levels == list(slide.level_dimensions)
        ours = s.read_region(700, 500, 0, 300, 200)
    np.testing.assert_array_equal(ours, _independent_region(slide, 700, 500, 300, 200))


def test_tiff_pyramid_levels_match_tifffile(slides: dict[str, SyntheticSlide]) -> None:
    src = slides["tiff"]
    with open_slide(src.path) as s, tifffile.TiffFile(src.path) as tif:
        level = tif.series[0].levels[2].asarray()
        np.testing.assert_array_equal(s.read_level(2), level)


def test_regions_outside_the_slide_are_white(slides: dict[str, SyntheticSlide]) -> None:
    with open_slide(slides["svs"].path) as s:
        region = s.read_region(-10, -10, 0, 20, 20)
    assert (region[:10, :10] == 255).all()
    assert region[15:, 15:].mean() < 255


def test_metadata_has_catalog_fields(slides: dict[str, SyntheticSlide]) -> None:
    meta = read_metadata(slides["svs"].path)
    assert (meta.vendor, meta.format, meta.objective_power) == ("aperio", "aperio", 40.0)
    assert (meta.width, meta.height, meta.mpp_x, meta.mpp_y) == (2048, 1536, 0.25, 0.25)
    assert meta.level_downsamples == (1.0, 4.0, 16.0)
    assert meta.associated_images == ("label", "macro", "thumbnail")
    assert (meta.tile_width, meta.compression) == (256, "jpeg")
    assert meta.slide_id == meta.sha256[:32] == read_metadata(slides["svs"].path).slide_id
    dicom = read_metadata(slides["dicom"].path)
    assert dicom.format == "dicom-wsi" and dicom.associated_images == ("label", "macro")
    assert read_metadata(slides["ome"].path).associated_images == ("label", "macro")


def test_generator_is_seeded(tmp_path: Path) -> None:
    a = make_slide(tmp_path / "a.tiff", "tiff", width=1024, height=768, seed=7)
    b = make_slide(tmp_path / "b.tiff", "tiff", width=1024, height=768, seed=7)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_truncated_slide_is_corrupt(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    data = slides["tiff"].path.read_bytes()
    bad = tmp_path / "cut.tiff"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptSlideError, match=r"cut\.tiff"):
        open_slide(bad)


def test_not_a_slide_is_unsupported(tmp_path: Path) -> None:
    bad = tmp_path / "notes.svs"
    bad.write_text("hello")
    with pytest.raises(UnsupportedSlideError, match=r"notes\.svs"):
        open_slide(bad)


def test_single_level_tiff_has_no_pyramid(tmp_path: Path) -> None:
    flat = tmp_path / "flat.tiff"
    tifffile.imwrite(flat, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), photometric="rgb")
    with pytest.raises(NoPyramidError, match=r"flat\.tiff"):
        open_slide(flat)


def test_cli_reports_each_bad_slide_and_continues(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"\0" * 100)
    result = CliRunner().invoke(app, ["info", str(bad), str(slides["svs"].path)])
    assert result.exit_code == 1
    assert "unsupported_slide" in result.output and "bad.svs" in result.output
    assert '"vendor": "aperio"' in result.output


def test_mirax_pixels_match_the_generator_and_hash_covers_its_folder(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    """OpenSlide is the only MIRAX reader, so the generator's painter is the reference."""
    from oncofed.testing.mirax import make_mirax_slide
    from oncofed.testing.slide_parts import TissuePainter

    slide = slides["mirax"]
    truth = TissuePainter(slide.width, slide.height, 6, True, 256, 85).render(1, 512, 256)
    with open_slide(slide.path) as s:
        ours = s.read_region(512, 256, 0, 256, 256).astype(int)
    assert np.abs(ours - truth).mean() < 3  # JPEG at quality 85
    other = make_mirax_slide(tmp_path / "other.mrxs", seed=7, width=2048, height=1536)
    first, second = read_metadata(slide.path), read_metadata(other.path)
    assert first.slide_id != second.slide_id  # both .mrxs files are empty: the data differ
    assert first.size_bytes > 100_000
