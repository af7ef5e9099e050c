"""Direct tile reads for tiled JPEG TIFF pages (Aperio SVS, generic tiled TIFF, OME-TIFF).

The common whole-slide read is a small region at full resolution. Going through a general reader
(OpenSlide's cache and RGBA compositing, or tifffile's zarr store) costs more than decoding the
JPEG tiles themselves, so for the usual layout (8-bit RGB/YCbCr JPEG tiles, interleaved) a page is
read here: ``os.pread`` of the tile bytes (no shared file position, so threads need no lock),
libjpeg-turbo decoding through imagecodecs, and a small per-slide LRU of decoded tiles for regions
that straddle tiles and for neighbouring requests (a viewer's Deep Zoom tiles overlap by a pixel).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from numpy.typing import NDArray

RGB = NDArray[np.uint8]
JPEG = 7
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6
WHITE = 255
SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# APP14 "Adobe" segment with transform 0: the three components are RGB, not YCbCr. Browsers and
# libjpeg read a plain 3-component JPEG as YCbCr, so RGB-coded tiles (Aperio) need it to travel.
ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


class TileCache:
    """Least-recently-used decoded tiles of one slide, shared by its levels; thread-safe."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._tiles: OrderedDict[tuple[int, int], RGB] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> RGB | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple[int, int], tile: RGB) -> None:
        with self._lock:
            self._tiles[key] = tile
            if len(self._tiles) > self.size:
                self._tiles.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()


class JpegTilePage:
    """One tiled JPEG TIFF page read tile by tile; regions come back as new RGB arrays."""

    def __init__(self, fd: int, page: Any, key: int, cache: TileCache) -> None:
        import imagecodecs

        self._decode = imagecodecs.jpeg8_decode
        self._fd, self._key, self._cache = fd, key, cache
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_width, self.tile_height = int(page.tilewidth), int(page.tilelength)
        self._cols = -(-self.width // self.tile_width)
        self._offsets = [int(o) for o in page.dataoffsets]
        self._counts = [int(c) for c in page.databytecounts]
        self._tables: bytes | None = page.jpegtables
        self._shape = (self.tile_height, self.tile_width)
        if page.photometric == PHOTOMETRIC_RGB and not getattr(page, "is_jfif", False):
            self._colorspace: int | None = PHOTOMETRIC_RGB  # RGB stored as such (Aperio)
        else:
            self._colorspace = None
        self._blank: RGB | None = None

    @staticmethod
    def supports(page: Any) -> bool:
        """Whether ``page`` has the layout this reader handles (else use a general reader)."""
        return bool(
            page.is_tiled
            and page.compression == JPEG
            and page.photometric in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR)
            and page.samplesperpixel == 3
            and page.bitspersample == 8
            and page.planarconfig == 1
            and not page.extrasamples
            and page.imagedepth == 1
            and len(page.dataoffsets)
            == -(-page.imagewidth // page.tilewidth) * -(-page.imagelength // page.tilelength)
        )

    def tile(self, index: int) -> RGB:
        """Decoded tile ``index`` (row-major), read-only, possibly shared through the cache."""
        key = (self._key, index)
        tile = self._cache.get(key)
        if tile is not None:
            return tile
        count = self._counts[index]
        if count == 0:  # sparse file: a tile never written is background
            if self._blank is None:
                self._blank = np.full((*self._shape, 3), WHITE, np.uint8)
                self._blank.flags.writeable = False
            return self._blank
        data = os.pread(self._fd, count, self._offsets[index])
        decoded: RGB = self._decode(
            data,
            tables=self._tables,
            colorspace=self._colorspace,
            outcolorspace=PHOTOMETRIC_RGB,
            shape=self._shape,
        )
        if decoded.shape[:2] != self._shape:
            raise ValueError(f"tile {index} decodes to {decoded.shape}, expected {self._shape}")
        decoded.flags.writeable = False
        self._cache.put(key, decoded)
        return decoded

    def encoded(self, col: int, row: int) -> bytes | None:
        """Tile (col, row) as a standalone JPEG file, without decoding it; None for tiles that
        are not stored whole (edge tiles extend past the page, sparse tiles are not stored)."""
        inside = (col + 1) * self.tile_width <= self.width and (
            row + 1
        ) * self.tile_height <= self.height
        if col < 0 or row < 0 or not inside:
            return None
        index = row * self._cols + col
        if self._counts[index] == 0:
            return None
        data = os.pread(self._fd, self._counts[index], self._offsets[index])
        return standalone_jpeg(data, self._tables, rgb=self._colorspace == PHOTOMETRIC_RGB)

    def read(self, x: int, y: int, width: int, height: int) -> RGB:
        """Region of this page (fully inside it) whose top-left is (x, y)."""
        tw, th = self.tile_width, self.tile_height
        c0, r0 = x // tw, y // th
        c1, r1 = (x + width - 1) // tw, (y + height - 1) // th
        if c0 == c1 and r0 == r1:
            tx, ty = x - c0 * tw, y - r0 * th
            tile = self.tile(r0 * self._cols + c0)
            return tile[ty : ty + height, tx : tx + width].copy()
        out = np.empty((height, width, 3), np.uint8)
        x1, y1 = x + width, y + height
        for r in range(r0, r1 + 1):
            ty0 = r * th
            sy0, sy1 = max(y, ty0), min(y1, ty0 + th)
            for c in range(c0, c1 + 1):
                tx0 = c * tw
                sx0, sx1 = max(x, tx0), min(x1, tx0 + tw)
                tile = self.tile(r * self._cols + c)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0
                ]
        return out


def standalone_jpeg(data: bytes, tables: bytes | None, *, rgb: bool) -> bytes:
    """A TIFF JPEG tile as a JPEG file: shared tables (JPEGTables) merged in, and the Adobe marker
    added when the components are RGB."""
    if not data.startswith(SOI):
        raise ValueError("JPEG tile does not start with SOI")
    body = data[2:]
    if tables:
        body = tables[2:].removesuffix(EOI) + body
    return SOI + (ADOBE_RGB if rgb else b"") + body
