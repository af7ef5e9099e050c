"""Tile grids at a requested resolution, Parquet coordinates, and a streaming tile reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from oncofed.storage.atomic import write_atomic
from oncofed.wsi.errors import TilingError
from oncofed.wsi.open import RGB, Slide, open_slide
from oncofed.wsi.tissue import TissueMask, detect_tissue

MPP_TOLERANCE = 0.02
META_KEY = b"oncofed.wsi.tiles"


@dataclass(frozen=True)
class TileSpec:
    """How tiles are cut: output ``size`` at ``mpp``, read as ``read_size`` pixels of ``level``,
    covering ``extent`` level-0 pixels each."""

    mpp: float
    size: int
    level: int
    read_size: int
    extent: float


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one slide that pass the tissue threshold (level-0 top-left corners)."""

    spec: TileSpec
    x: np.ndarray
    y: np.ndarray
    tissue_fraction: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def to_table(self) -> pa.Table:
        """Arrow table with the spec in its schema metadata."""
        meta = {META_KEY: json.dumps(self.spec.__dict__).encode()}
        return pa.table(
            {
                "x": pa.array(self.x, pa.int64()),
                "y": pa.array(self.y, pa.int64()),
                "tissue_fraction": pa.array(self.tissue_fraction, pa.float32()),
            }
        ).replace_schema_metadata(meta)


def tile_spec(slide: Slide, mpp: float, size: int) -> TileSpec:
    """Choose the level to read tiles of ``size`` pixels at ``mpp`` micrometres per pixel."""
    if size <= 0 or mpp <= 0:
        raise TilingError(f"{slide.path}: tile size {size} and mpp {mpp} must be positive")
    if slide.mpp is None:
        raise TilingError(f"{slide.path}: slide has no pixel spacing (mpp); cannot tile at {mpp}")
    ds = mpp / slide.mpp[0]
    if ds < 1 - MPP_TOLERANCE:
        raise TilingError(
            f"{slide.path}: requested {mpp} µm/px is finer than the scan ({slide.mpp[0]:.4g} µm/px)"
        )
    ds = max(ds, 1.0)
    level = slide.best_level(ds * (1 + MPP_TOLERANCE))
    scale = ds / slide.levels[level].downsample
    read = size if abs(scale - 1) <= MPP_TOLERANCE else round(size * scale)
    return TileSpec(mpp=mpp, size=size, level=level, read_size=read, extent=size * ds)


def tile_grid(
    slide: Slide,
    *,
    mpp: float,
    size: int,
    min_tissue: float = 0.5,
    mask: TissueMask | None = None,
) -> TileGrid:
    """Non-overlapping tiles fully inside the slide with at least ``min_tissue`` tissue."""
    spec = tile_spec(slide, mpp, size)
    mask = mask or detect_tissue(slide)
    w0, h0 = slide.dimensions
    xs = np.arange(0, int(w0 - spec.extent) + 1, spec.extent)
    ys = np.arange(0, int(h0 - spec.extent) + 1, spec.extent)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    frac = _box_fractions(mask, gx, gy, spec.extent)
    keep = frac >= min_tissue
    return TileGrid(
        spec, gx[keep].astype(np.int64), gy[keep].astype(np.int64), frac[keep].astype(np.float32)
    )


def _box_fractions(mask: TissueMask, x: np.ndarray, y: np.ndarray, extent: float) -> np.ndarray:
    """Tissue share of each level-0 box, from a summed-area table of the mask."""
    m = mask.mask
    sat = np.zeros((m.shape[0] + 1, m.shape[1] + 1), np.int64)
    sat[1:, 1:] = m.cumsum(0).cumsum(1)
    dx, dy = mask.downsample
    x0 = np.clip(np.floor(x / dx).astype(np.int64), 0, m.shape[1])
    y0 = np.clip(np.floor(y / dy).astype(np.int64), 0, m.shape[0])
    x1 = np.clip(np.ceil((x + extent) / dx).astype(np.int64), 0, m.shape[1])
    y1 = np.clip(np.ceil((y + extent) / dy).astype(np.int64), 0, m.shape[0])
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    total = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return np.asarray(total / area, np.float64)


def write_tiles_parquet(grid: TileGrid, path: str | Path) -> Path:
    """Write tile coordinates atomically (temp file, fsync, rename)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(grid.to_table(), buffer)
    return write_atomic(Path(path), buffer.getvalue().to_pybytes())


def read_tiles_parquet(path: str | Path) -> TileGrid:
    """Tile grid written by :func:`write_tiles_parquet`."""
    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None:
        raise TilingError(f"{path}: not an oncofed tile table (no {META_KEY.decode()} metadata)")
    spec = TileSpec(**json.loads(meta))
    return TileGrid(
        spec,
        table["x"].to_numpy(),
        table["y"].to_numpy(),
        table["tissue_fraction"].to_numpy(),
    )


@dataclass(frozen=True)
class Tile:
    """One tile: level-0 top-left corner and RGB pixels (size x size x 3)."""

    x: int
    y: int
    image: RGB


def read_tile(slide: Slide, spec: TileSpec, x: int, y: int) -> RGB:
    """Pixels of one tile, read from the chosen level and resized when the level's mpp differs."""
    rgb = slide.read_region(x, y, spec.level, spec.read_size, spec.read_size)
    if spec.read_size == spec.size:
        return rgb
    img = Image.fromarray(rgb).resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    return np.asarray(img)


class TileReader:
    """Iterable over the tiles of a grid, reading each tile on demand (never a whole level).

    ``shard``/``shards`` split the tiles between data-loader workers or training processes; the
    slide is opened inside ``__iter__`` so each worker process gets its own handle.
    """

    def __init__(
        self, slide_path: str | Path, grid: TileGrid, *, shard: int = 0, shards: int = 1
    ) -> None:
        if not 0 <= shard < shards:
            raise TilingError(f"shard {shard} is not in 0..{shards - 1}")
        self.slide_path, self.grid = Path(slide_path), grid
        self.indices = np.arange(shard, len(grid), shards)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Tile]:
        spec = self.grid.spec
        with open_slide(self.slide_path, check=False) as slide:
            for i in self.indices:
                x, y = int(self.grid.x[i]), int(self.grid.y[i])
                yield Tile(x, y, read_tile(slide, spec, x, y))
