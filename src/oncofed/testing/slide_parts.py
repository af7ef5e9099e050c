"""What every synthetic slide is made of: planted fake identifiers, the painter that draws
H&E-like tissue (and an optional pen mark) tile by tile, the pyramid's level sizes, and the label,
macro and thumbnail images. The TIFF, NDPI and MIRAX writers all build on these."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import imagecodecs
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

RGB = NDArray[np.uint8]

BACKGROUND = (241, 240, 243)
EOSIN = (236, 150, 196)
HEMATOXYLIN = (96, 58, 150)
PEN_COLOURS = ((40, 70, 190), (30, 140, 70))


@dataclass(frozen=True)
class FakeIdentifiers:
    """Identifiers planted in a synthetic slide; none of them may survive de-identification."""

    # Name parts are matched case-insensitively by byte verification: avoid words such as
    # "patient" or "slide" that DICOM's own coded meanings contain.
    patient_name: str = "FAKENAME^ZQXW"
    patient_id: str = "FAKE-PID-0001"
    slide_label: str = "FAKESLIDE-0001"
    filename: str = "FAKE-SLIDE-0001_scan.svs"
    scanner_id: str = "FAKE-SCANNER-42"
    date: str = "12/31/21"
    tiff_datetime: str = "2021:12:31 13:45:07"

    def all(self) -> tuple[str, ...]:
        """Every planted string, for byte-level verification."""
        return (
            self.patient_name,
            self.patient_id,
            self.slide_label,
            self.filename,
            self.scanner_id,
            self.date,
            self.tiff_datetime,
        )


@dataclass(frozen=True)
class SyntheticSlide:
    """A generated slide and the facts a test needs about it."""

    path: Path
    kind: str
    width: int
    height: int
    mpp: float
    level_dimensions: tuple[tuple[int, int], ...]
    tissue_mask: NDArray[np.bool_] = field(repr=False)
    mask_downsample: int
    identifiers: FakeIdentifiers

    @classmethod
    def drawn(
        cls,
        path: Path,
        kind: str,
        painter: Painter,
        level_dimensions: tuple[tuple[int, int], ...],
        mpp: float,
        identifiers: FakeIdentifiers,
    ) -> SyntheticSlide:
        """The slide ``painter`` drew: as large as its level 0, with the painter's tissue mask."""
        width, height = level_dimensions[0]
        return cls(
            path=path,
            kind=kind,
            width=width,
            height=height,
            mpp=mpp,
            level_dimensions=level_dimensions,
            tissue_mask=painter.tissue,
            mask_downsample=painter.ds,
            identifiers=identifiers,
        )


class Painter(Protocol):
    """What the slide writers draw from: level-0 maps at ``ds`` downsample and JPEG tiles."""

    tile: int
    quality: int
    ds: int
    tissue: NDArray[np.bool_]
    pen: NDArray[np.bool_]
    pen_colour: NDArray[np.uint8]

    def encoded(self, downsample: int, x: int, y: int) -> bytes:
        """JPEG bytes of the tile of a level with this downsample whose top-left is (x, y)."""
        ...


class TissuePainter:
    """Renders any tile of any level from a low-resolution tissue/pen map and a texture bank."""

    def __init__(
        self, width: int, height: int, seed: int, pen: bool, tile: int, quality: int
    ) -> None:
        self.width, self.height, self.tile, self.quality = width, height, tile, quality
        rng = np.random.default_rng(seed)
        self.ds = max(1, math.ceil(max(width, height) / 1024))
        mh, mw = math.ceil(height / self.ds), math.ceil(width / self.ds)
        self.tissue = _blobs(mh, mw, rng)
        self.pen = _pen_stroke(mh, mw, rng) & ~self.tissue if pen else np.zeros_like(self.tissue)
        self.pen_colour = np.array(PEN_COLOURS[int(rng.integers(len(PEN_COLOURS)))], np.uint8)
        self.textures = [_texture(tile, rng) for _ in range(8)]
        self.background = _background(tile, rng)
        self._encoded: dict[int, bytes] = {}

    def render(self, downsample: int, x: int, y: int) -> RGB:
        """Tile of a level with the given downsample whose top-left is (x, y) in level pixels."""
        t = self.tile
        ys = ((y + np.arange(t)) * downsample) // self.ds
        xs = ((x + np.arange(t)) * downsample) // self.ds
        ys = np.minimum(ys, self.tissue.shape[0] - 1)
        xs = np.minimum(xs, self.tissue.shape[1] - 1)
        tissue = self.tissue[np.ix_(ys, xs)]
        pen = self.pen[np.ix_(ys, xs)]
        out = self.background.copy()
        tex = self.textures[(x // t * 7919 + y // t * 104729) % len(self.textures)]
        out[tissue] = tex[tissue]
        out[pen] = self.pen_colour
        return out

    def encoded(self, downsample: int, x: int, y: int) -> bytes:
        """JPEG bytes of a tile; uniform tiles are encoded once and reused (fast big slides)."""
        t = self.tile
        y0, x0 = (y * downsample) // self.ds, (x * downsample) // self.ds
        y1 = min(((y + t) * downsample) // self.ds + 1, self.tissue.shape[0])
        x1 = min(((x + t) * downsample) // self.ds + 1, self.tissue.shape[1])
        tissue, pen = self.tissue[y0:y1, x0:x1], self.pen[y0:y1, x0:x1]
        if not pen.any() and (not tissue.any() or tissue.all()):
            key = -1 if not tissue.any() else (x // t * 7919 + y // t * 104729) % len(self.textures)
            if key not in self._encoded:
                self._encoded[key] = jpeg_encode(self.render(downsample, x, y), self.quality)
            return self._encoded[key]
        return jpeg_encode(self.render(downsample, x, y), self.quality)


def jpeg_encode(tile: RGB, quality: int) -> bytes:
    """Encode an RGB tile the way tifffile does for photometric YCbCr JPEG tiles."""
    return bytes(
        imagecodecs.jpeg8_encode(
            tile, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2)
        )
    )


def _blobs(h: int, w: int, rng: np.random.Generator) -> NDArray[np.bool_]:
    """A few irregular elliptical tissue fragments covering roughly a third of the slide."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field_ = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(3, 6))):
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.08, 0.2) * h, rng.uniform(0.08, 0.2) * w
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        wobble = 0.15 * np.sin(np.arctan2(v, u) * rng.integers(3, 7) + rng.uniform(0, 6))
        field_ = np.maximum(field_, 1.0 - np.sqrt(u * u + v * v) + wobble)
    return field_ > 0


def _pen_stroke(h: int, w: int, rng: np.random.Generator) -> NDArray[np.bool_]:
    """A thick marker line across the slide, like a pathologist's annotation."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    pts = [
        (float(rng.uniform(0.05, 0.95) * w), float(rng.uniform(0.05, 0.95) * h)) for _ in range(4)
    ]
    draw.line(pts, fill=255, width=max(2, min(h, w) // 60))
    return np.asarray(img) > 0


def _texture(size: int, rng: np.random.Generator) -> RGB:
    """Eosin-pink stroma with hematoxylin-purple nuclei."""
    noise = rng.normal(0, 8, (size, size, 1)).astype(np.float32)
    tex = np.array(EOSIN, np.float32) + noise
    yy, xx = np.mgrid[0:size, 0:size]
    for cy, cx, r in zip(
        rng.integers(0, size, 60), rng.integers(0, size, 60), rng.integers(3, 7, 60), strict=True
    ):
        tex[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = HEMATOXYLIN
    return np.asarray(np.clip(tex, 0, 255), dtype=np.uint8)


def _background(size: int, rng: np.random.Generator) -> RGB:
    """Near-white glass with faint noise."""
    noise = rng.normal(0, 1.5, (size, size, 1))
    return np.clip(np.array(BACKGROUND, np.float64) + noise, 0, 255).astype(np.uint8)


def label_image(ids: FakeIdentifiers) -> RGB:
    """A slide label with the fake patient name, slide id and a barcode-like stripe."""
    img = Image.new("RGB", (400, 300), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    draw.text((20, 20), ids.patient_name, fill=(0, 0, 0))
    draw.text((20, 50), ids.patient_id, fill=(0, 0, 0))
    draw.text((20, 80), ids.slide_label, fill=(0, 0, 0))
    for i, bit in enumerate(ids.slide_label.encode()):
        draw.rectangle((20 + i * 12, 150, 20 + i * 12 + (bit % 7) + 2, 260), fill=(0, 0, 0))
    return np.asarray(img)


def macro_image(painter: Painter, ids: FakeIdentifiers) -> RGB:
    """A photo of the whole glass slide: label area plus the tissue seen from above."""
    h = 400
    w = int(h * 3)
    img = Image.new("RGB", (w, h), (200, 200, 205))
    label = Image.fromarray(label_image(ids)).resize((h * 4 // 3 // 2, h // 2))
    img.paste(label, (10, h // 4))
    img.paste(Image.fromarray(overview(painter, w - h, h - 20)), (h - 10, 10))
    return np.asarray(img)


def level_dims(width: int, height: int, factor: int, tile: int) -> list[tuple[int, int, int]]:
    """(downsample, width, height) per level until the level fits in about one tile."""
    dims = [(1, width, height)]
    while max(dims[-1][1], dims[-1][2]) > tile:
        ds = dims[-1][0] * factor
        dims.append((ds, math.ceil(width / ds), math.ceil(height / ds)))
    return dims


def overview(painter: Painter, w: int, h: int) -> RGB:
    """A small whole-slide picture (thumbnail) drawn from the tissue and pen maps."""
    ov = np.where(
        painter.tissue[..., None], np.array(EOSIN, np.uint8), np.array(BACKGROUND, np.uint8)
    )
    ov[painter.pen] = painter.pen_colour
    return np.asarray(Image.fromarray(ov.astype(np.uint8)).resize((max(w, 1), max(h, 1))))
