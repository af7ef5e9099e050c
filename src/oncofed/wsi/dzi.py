"""Deep Zoom (DZI) pyramid over any opened slide: descriptor XML and JPEG tiles."""

from __future__ import annotations

import math

import imagecodecs
import numpy as np
from PIL import Image

from oncofed.wsi.errors import SlideNotFoundError
from oncofed.wsi.open import Slide


class DeepZoom:
    """Deep Zoom levels 0 (1x1 pixel) .. ``level_count - 1`` (full resolution) of a slide."""

    def __init__(
        self, slide: Slide, *, tile_size: int = 254, overlap: int = 1, quality: int = 80
    ) -> None:
        self.slide, self.tile_size, self.overlap, self.quality = slide, tile_size, overlap, quality
        w, h = slide.dimensions
        self.level_count = math.ceil(math.log2(max(w, h))) + 1
        self.level_dimensions = [
            (
                math.ceil(w / 2 ** (self.level_count - 1 - lv)),
                math.ceil(h / 2 ** (self.level_count - 1 - lv)),
            )
            for lv in range(self.level_count)
        ]

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
