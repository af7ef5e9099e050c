"""Direct tile reads of tiled JPEG TIFF pages: identical pixels to OpenSlide/tifffile, fallback."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from oncofed.testing.wsi import SyntheticSlide
from oncofed.wsi.open import open_slide


def _reference_level(s: SyntheticSlide, level: int) -> np.ndarray:
    if s.kind == "ome":
        with tifffile.TiffFile(s.path) as tif:
            return tif.series[0].levels[level].asarray()
    with openslide.OpenSlide(s.path) as osr:
        w, h = osr.level_dimensions[level]
        return np.asarray(osr.read_region((0, 0), level, (w, h)).convert("RGB"))


@pytest.mark.parametrize("kind", ["svs", "tiff", "ome"])
def test_direct_reads_match_independent_reader(
    slides: dict[str, SyntheticSlide], kind: str
) -> None:
    slide = slides[kind]
    rng = random.Random(0)
    with open_slide(slide.path) as s:
        assert all(d is not None for d in s._direct)  # type: ignore[attr-defined]
        for level, lv in enumerate(s.levels):
            ref = _reference_level(slide, level)
            assert np.array_equal(s.read_level(level), ref)
            for _ in range(20):  # regions inside one tile, across tiles, over the edges
                w, h = rng.randrange(1, 600), rng.randrange(1, 600)
                lx, ly = rng.randrange(-w + 1, lv.width), rng.randrange(-h + 1, lv.height)
                got = s.read_region(
                    round(lx * lv.downsample), round(ly * lv.downsample), level, w, h
                )
                want = np.full((h, w, 3), 255, np.uint8)
                x0, y0 = max(lx, 0), max(ly, 0)
                x1, y1 = min(lx + w, lv.width), min(ly + h, lv.height)
                want[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = ref[y0:y1, x0:x1]
                assert got.shape == (h, w, 3) and got.flags.writeable
                assert np.array_equal(got, want)


def test_other_tile_codecs_fall_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1024, 1024, 3), np.uint8)
    path = tmp_path / "lzw.tiff"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), compression="lzw", photometric="rgb")
        tif.write(image[::4, ::4], tile=(256, 256), compression="lzw", subfiletype=1)
    with open_slide(path) as s:
        assert s._direct == [None, None]  # type: ignore[attr-defined]
        assert np.array_equal(s.read_region(100, 200, 0, 300, 300), image[200:500, 100:400])
