"""Deep Zoom (DZI) pyramid over any opened slide: descriptor XML and JPEG tiles.

When the slide stores its levels as square JPEG tiles, the Deep Zoom grid is laid on the native one
(tile size = native tile size, no overlap) so that a Deep Zoom tile of a stored level *is* a stored
tile: its JPEG bytes are sent as they are, with no decoding or re-encoding. Other Deep Zoom levels
and edge tiles are read, resampled and encoded.
"""

from __future__ import annotations

import math

import imagecodecs
import numpy as np
from PIL import Image

from oncofed.wsi.errors import SlideNotFoundError
from oncofed.wsi.open import Slide

DEFAULT_TILE_SIZE, DEFAULT_OVERLAP = 254, 1  # for slides without square stored JPEG tiles
MAX_NATIVE_TILE = 1024


def _native_tile_size(slide: Slide) -> int | None:
    """Level 0's tile size when its tiles are square JPEGs a browser can show as they are."""
    level = slide.levels[0]
    square = level.tile_width == level.tile_height <= MAX_NATIVE_TILE
    if not square or level.width <= level.tile_width or level.height <= level.tile_height:
        return None
    return level.tile_width if slide.stored_tile(0, 0, 0) is not None else None


class DeepZoom:
    """Deep Zoom levels 0 (1x1 pixel) .. ``level_count - 1`` (full resolution) of a slide."""

    def __init__(
        self,
        slide: Slide,
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        quality: int = 80,
    ) -> None:
        native = _native_tile_size(slide)
        self.slide, self.quality = slide, quality
        self.tile_size = tile_size or native or DEFAULT_TILE_SIZE
        self.overlap = (0 if native else DEFAULT_OVERLAP) if overlap is None else overlap
        w, h = slide.dimensions
        self.level_count = math.ceil(math.log2(max(w, h))) + 1
        self.level_dimensions = [
            (
                math.ceil(w / 2 ** (self.level_count - 1 - lv)),
                math.ceil(h / 2 ** (self.level_count - 1 - lv)),
            )
            for lv in range(self.level_count)
        ]
        self._stored = self._stored_levels()

    def _stored_levels(self) -> dict[int, int]:
        """Deep Zoom level -> slide level, where the two grids coincide tile for tile."""
        if self.overlap:
            return {}
        by_size = {
            (lv.width, lv.height): i
            for i, lv in enumerate(self.slide.levels)
            if (lv.tile_width, lv.tile_height) == (self.tile_size, self.tile_size)
        }
        return {
            dz: by_size[size] for dz, size in enumerate(self.level_dimensions) if size in by_size
        }

    def xml(self) -> str:
        """The .dzi descriptor."""
        w, h = self.slide.dimensions
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="jpeg" Overlap="{self.overlap}" TileSize="{self.tile_size}">'
            f'<Size Width="{w}" Height="{h}"/></Image>'
        )

    def tile(self, level: int, col: int, row: int) -> bytes:
        """JPEG bytes of one Deep Zoom tile."""
        if not 0 <= level < self.level_count:
            raise SlideNotFoundError(f"{self.slide.path}: no Deep Zoom level {level}")
        lw, lh = self.level_dimensions[level]
        ts, ov = self.tile_size, self.overlap
        x0, y0 = col * ts - (ov if col else 0), row * ts - (ov if row else 0)
        if col < 0 or row < 0 or x0 >= lw or y0 >= lh:
            raise SlideNotFoundError(f"{self.slide.path}: no tile {col}_{row} at level {level}")
        stored = self._stored.get(level)
        if stored is not None:
            data = self.slide.stored_tile(stored, col, row)
            if data is not None:
                return data
        x1, y1 = min((col + 1) * ts + ov, lw), min((row + 1) * ts + ov, lh)
        scale = 2 ** (self.level_count - 1 - level)
        slide_level = self.slide.best_level(scale)
        ds = self.slide.levels[slide_level].downsample
        rw = max(1, math.ceil((x1 - x0) * scale / ds))
        rh = max(1, math.ceil((y1 - y0) * scale / ds))
        rgb = self.slide.read_region(x0 * scale, y0 * scale, slide_level, rw, rh)
        if (rw, rh) != (x1 - x0, y1 - y0):
            img = Image.fromarray(rgb).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
            rgb = np.asarray(img)
        # libjpeg-turbo straight from the array (baseline, 4:2:0, like PIL's defaults; faster)
        return bytes(imagecodecs.jpeg8_encode(rgb, level=self.quality))
