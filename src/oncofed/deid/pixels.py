"""Clean Pixel Data: mask burned-in text in ultrasound, secondary capture and annotated images.

Two sources of masks: for ultrasound, everything outside the Sequence of Ultrasound Regions (the
header bands with names and dates lie outside the data regions); for every image, a text detector
that marks 8x8 tiles holding short connected strokes of near-maximum intensity, grown a tile.
Pixels that cannot be decoded or are in an unsupported layout make the file fail (quarantine).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from oncofed.deid.dataset import Rejected

SECONDARY_CAPTURE = frozenset(
    "1.2.840.10008.5.1.4.1.1.7" + suffix for suffix in ("", ".1", ".2", ".3", ".4")
)
TILE = 8


def needs_cleaning(ds: Dataset) -> bool:
    """True for images that may carry burned-in text: US, secondary capture, annotation=YES."""
    return "PixelData" in ds and (
        str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
        or str(ds.get("Modality", "")).upper() == "US"
        or str(ds.get("SOPClassUID", "")) in SECONDARY_CAPTURE
    )


def region_mask(ds: Dataset, rows: int, cols: int) -> NDArray[np.bool_]:
    """Return True outside the ultrasound data regions (all False when there are none)."""
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    mask = np.zeros((rows, cols), dtype=bool)
    if not regions:
        return mask
    mask[:] = True
    for region in regions:
        x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
        x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
        mask[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = False
    return mask


def text_mask(gray: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Return True on tiles that look like rendered text (bright, thin, connected strokes)."""
    rows, cols = gray.shape
    top = float(gray.max())
    if top <= 0:
        return np.zeros((rows, cols), dtype=bool)
    bright = gray >= top * 0.85
    neighbour = np.zeros_like(bright)
    neighbour[:, 1:] |= bright[:, :-1]
    neighbour[:, :-1] |= bright[:, 1:]
    neighbour[1:, :] |= bright[:-1, :]
    neighbour[:-1, :] |= bright[1:, :]
    edges = np.zeros_like(bright)
    edges[:, 1:] = bright[:, 1:] != bright[:, :-1]
    pr, pc = -rows % TILE, -cols % TILE
    shape = ((rows + pr) // TILE, TILE, (cols + pc) // TILE, TILE)

    def tiles(a: NDArray[np.bool_]) -> NDArray[np.int64]:
        padded = np.pad(a, ((0, pr), (0, pc))).reshape(shape)
        return np.asarray(padded.sum(axis=(1, 3)), dtype=np.int64)

    count, joined, crossings = tiles(bright), tiles(bright & neighbour), tiles(edges)
    texty = (count >= 4) & (count <= TILE * TILE * 0.6) & (joined >= count * 0.6) & (crossings >= 4)
    grown = texty.copy()
    grown[1:, :] |= texty[:-1, :]
    grown[:-1, :] |= texty[1:, :]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    full = np.repeat(np.repeat(grown, TILE, axis=0), TILE, axis=1)
    return full[:rows, :cols]


def clean_pixels(ds: Dataset) -> float:
    """Mask burned-in text in ``ds`` in place; return the fraction of pixels masked."""
    if int(ds.get("BitsAllocated", 0)) not in (8, 16, 32):
        raise Rejected(f"cannot clean pixels with BitsAllocated={ds.get('BitsAllocated')}")
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.pixel_array_options(as_rgb=False)
        pixels = ds.pixel_array.copy()
    except Exception as exc:
        raise Rejected(f"pixel data cannot be decoded for cleaning ({type(exc).__name__})") from exc
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = pixels.reshape(-1, rows, cols, int(ds.get("SamplesPerPixel", 1)))
    gray = frames.max(axis=(0, 3)).astype(np.float32)
    gray -= gray.min()
    mask = region_mask(ds, rows, cols) | text_mask(gray)
    frames[:, mask, :] = frames.min()
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.BurnedInAnnotation = "NO"
    return float(mask.mean())
