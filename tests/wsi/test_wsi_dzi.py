"""Deep Zoom tiles: stored JPEG tiles pass through unchanged, other tiles are rendered."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from oncofed.testing.wsi import SyntheticSlide
from oncofed.wsi.dzi import DeepZoom
from oncofed.wsi.open import open_slide
from oncofed.wsi.tiles import standalone_jpeg


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("kind", ["svs", "tiff", "ome", "dicom"])
def test_stored_tiles_pass_through(slides: dict[str, SyntheticSlide], kind: str) -> None:
    with open_slide(slides[kind].path) as slide:
        dz = DeepZoom(slide)
        assert (dz.tile_size, dz.overlap) == (256, 0)
        top = dz.level_count - 1
        stored = slide.stored_tile(0, 2, 1)
        assert stored is not None and dz.tile(top, 2, 1) == stored  # the bytes, not a re-encode
        np.testing.assert_array_equal(_decoded(stored), slide.read_region(512, 256, 0, 256, 256))


def test_edge_and_between_level_tiles_are_rendered(slides: dict[str, SyntheticSlide]) -> None:
    with open_slide(slides["svs"].path) as slide:  # 2048 x 1536, SVS levels at 1, 4, 16
        dz = DeepZoom(slide)
        top = dz.level_count - 1
        assert slide.stored_tile(0, 8, 0) is None  # past the right edge
        half = _decoded(dz.tile(top - 1, 1, 1))  # downsample 2: no stored level
        assert half.shape == (256, 256, 3)
        expected = np.asarray(
            Image.fromarray(slide.read_region(512, 512, 0, 512, 512)).resize((256, 256))
        )
        assert np.abs(half.astype(int) - expected).mean() < 6  # bilinear + JPEG, not exact


def test_slides_without_stored_jpeg_tiles_keep_the_overlapping_grid(
    slides: dict[str, SyntheticSlide],
) -> None:
    with open_slide(slides["ndpi"].path) as slide:  # NDPI levels are strips, not tiles
        dz = DeepZoom(slide)
        assert (dz.tile_size, dz.overlap) == (254, 1)
        assert _decoded(dz.tile(dz.level_count - 1, 1, 1)).shape == (256, 256, 3)


def test_rgb_coded_tiles_carry_the_adobe_marker() -> None:
    """Aperio stores many slides as RGB-coded JPEG: without the marker, viewers show it as
    YCbCr (wrong colours)."""
    rng = np.random.default_rng(3)
    tile = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    tile[:32] = (200, 40, 90)
    coded = bytes(imagecodecs.jpeg8_encode(tile, level=95, colorspace="RGB", outcolorspace="RGB"))
    data = standalone_jpeg(coded, None, rgb=True)
    assert np.abs(_decoded(data)[:32].astype(int) - (200, 40, 90)).max() < 8
    with pytest.raises(ValueError, match="SOI"):
        standalone_jpeg(b"not a jpeg", None, rgb=False)
