"""Tissue detection with pen marks, tile grids at a target mpp, Parquet and streaming reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from oncofed.testing.wsi import SyntheticSlide
from oncofed.wsi.cli import app
from oncofed.wsi.errors import TilingError
from oncofed.wsi.open import open_slide
from oncofed.wsi.tiling import (
    TileReader,
    read_tiles_parquet,
    tile_grid,
    tile_spec,
    write_tiles_parquet,
)
from oncofed.wsi.tissue import detect_tissue, tissue_mask


def test_tissue_mask_matches_truth_and_ignores_pen(slide: SyntheticSlide) -> None:
    with open_slide(slide.path) as s:
        mask = detect_tissue(s)
    truth = np.asarray(
        Image.fromarray(slide.tissue_mask).resize(mask.mask.shape[::-1], Image.Resampling.NEAREST)
    )
    iou = (truth & mask.mask).sum() / (truth | mask.mask).sum()
    assert iou > 0.95


def test_blank_glass_has_no_tissue() -> None:
    glass = np.full((200, 300, 3), 240, np.uint8)
    glass[50:60, :] = (40, 70, 190)  # blue pen stroke
    glass[100:105, 100:200] = (10, 10, 10)  # dark dirt
    assert not tissue_mask(glass).any()


def test_grid_at_target_mpp(slides: dict[str, SyntheticSlide]) -> None:
    with open_slide(slides["tiff"].path) as s:
        grid = tile_grid(s, mpp=0.5, size=128, min_tissue=0.5)
        assert (grid.spec.level, grid.spec.read_size, grid.spec.extent) == (1, 128, 256.0)
        assert len(grid) > 0 and (grid.tissue_fraction >= 0.5).all()
        assert (grid.x % 256 == 0).all() and (grid.x + 256 <= 2048).all()
        everything = tile_grid(s, mpp=0.5, size=128, min_tissue=0.0)
        assert len(everything) == 8 * 6


def test_svs_resamples_between_levels(slides: dict[str, SyntheticSlide]) -> None:
    with open_slide(slides["svs"].path) as s:  # levels at 0.25 / 1.0 / 4.0 mpp
        spec = tile_spec(s, 0.5, 256)
        assert (spec.level, spec.read_size) == (0, 512)
        with pytest.raises(TilingError, match="finer"):
            tile_spec(s, 0.1, 256)


def test_parquet_roundtrip_and_streaming_reader(
    tmp_path: Path, slides: dict[str, SyntheticSlide]
) -> None:
    path = slides["svs"].path
    with open_slide(path) as s:
        grid = tile_grid(s, mpp=0.5, size=64, min_tissue=0.9)
    out = write_tiles_parquet(grid, tmp_path / "t.parquet")
    assert pq.read_table(out).column_names == ["x", "y", "tissue_fraction"]
    back = read_tiles_parquet(out)
    assert back.spec == grid.spec and (back.x == grid.x).all()
    halves = [list(TileReader(path, back, shard=i, shards=2)) for i in range(2)]
    assert sum(len(h) for h in halves) == len(grid)
    tile = halves[0][0]
    assert tile.image.shape == (64, 64, 3)
    assert tile.image.std() > 5  # tissue, not blank glass


def test_cli_tiles(tmp_path: Path, slides: dict[str, SyntheticSlide]) -> None:
    args = [
        "tiles",
        str(slides["ome"].path),
        "--mpp",
        "0.5",
        "--size",
        "256",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.glob("*.parquet")
    assert read_tiles_parquet(written).spec.size == 256
