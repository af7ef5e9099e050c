"""Clean Pixel Data: mask burned-in text in ultrasound, secondary capture and annotated images.

Two sources of masks: for ultrasound, everything outside the Sequence of Ultrasound Regions (the
header bands with names and dates lie outside the data regions, so this is the mask relied on
when the sequence is present); for every image, a text detector for annotations anywhere else.
Pixels that cannot be decoded or are in an unsupported layout make the file fail (quarantine).

The detector is hand-written because no maintained OCR-free detector fits a de-identification
stage (the learned ones need downloaded weights). Scanners draw text as thin strokes of one
near-maximum value with hard edges; speckle also reaches the top grey levels, but its bright
blobs fade through intermediate levels, vary in level and are compact. So a bright connected
component counts as text when it is thin (erosion leaves almost nothing), flat (nearly all of it
at its peak level) and sharp-edged (few of its neighbours lie in the band just below the bright
level); text components are masked with a margin.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from scipy import ndimage

from oncofed.deid.dataset import Rejected

SECONDARY_CAPTURE = frozenset(
    "1.2.840.10008.5.1.4.1.1.7" + suffix for suffix in ("", ".1", ".2", ".3", ".4")
)
BRIGHT = 0.85
"""Stroke pixels are at least this share of the image's top grey level."""
SOFT = 0.65
"""Neighbours between this share and ``BRIGHT`` make an edge soft (speckle, not text)."""
MAX_SOFT_EDGE = 0.1
"""Text components have at most this many soft edge pixels per stroke pixel."""
MIN_FLAT = 0.8
"""Text is drawn in one colour: this share of a component lies within ``FLAT`` of its peak."""
FLAT = 0.02
MAX_CORE = 0.2
"""Text components keep at most this share of their pixels under a 3x3 erosion (thin)."""
MARGIN = 3
"""Pixels masked around each text stroke."""
_SQUARE = np.ones((3, 3), dtype=bool)


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
    """Return True on and around thin, flat, sharp-edged bright strokes (text)."""
    top = float(gray.max())
    if top <= 0:
        return np.zeros(gray.shape, dtype=bool)
    bright = gray >= top * BRIGHT
    labels, count = ndimage.label(bright, structure=_SQUARE)
    if count == 0:
        return np.zeros(gray.shape, dtype=bool)
    soft = ~bright & (gray >= top * SOFT)
    touching = _neighbour_max(labels)  # a soft pixel's adjacent component, if any
    size = np.bincount(labels.ravel(), minlength=count + 1)
    soft_edges = np.bincount(touching[soft], minlength=count + 1)
    eroded = ~_grow(~bright, 1)
    core = np.bincount(labels[eroded], minlength=count + 1)
    stroke_labels, stroke_levels = labels[bright], gray[bright]
    peak = np.zeros(count + 1, dtype=np.float32)
    np.maximum.at(peak, stroke_labels, stroke_levels)
    at_peak = stroke_labels[stroke_levels >= peak[stroke_labels] - FLAT * top]
    flat = np.bincount(at_peak, minlength=count + 1)
    text = (
        (size >= 2)
        & (soft_edges <= MAX_SOFT_EDGE * size)
        & (core <= MAX_CORE * size)
        & (flat >= MIN_FLAT * size)
    )
    text[0] = False
    return _grow(text[labels], MARGIN)


def _grow(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """``mask`` dilated by a square of side ``2 * radius + 1`` (shifted ORs: scipy's dilations
    and 1D max filters take several times longer on camera-sized frames)."""
    grown = mask.copy()
    for axis in (0, 1):
        for _ in range(radius):
            step = grown.copy()
            if axis == 0:
                step[1:] |= grown[:-1]
                step[:-1] |= grown[1:]
            else:
                step[:, 1:] |= grown[:, :-1]
                step[:, :-1] |= grown[:, 1:]
            grown = step
    return grown


def _neighbour_max(labels: NDArray[np.int32]) -> NDArray[np.int32]:
    """Largest label among each pixel's four neighbours (slices: much faster than a dilation)."""
    out = np.zeros_like(labels)
    np.maximum(out[1:, :], labels[:-1, :], out=out[1:, :])
    np.maximum(out[:-1, :], labels[1:, :], out=out[:-1, :])
    np.maximum(out[:, 1:], labels[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], labels[:, 1:], out=out[:, :-1])
    return out


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
