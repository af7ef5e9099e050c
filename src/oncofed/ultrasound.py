"""Ultrasound regions (DICOM PS3.3 C.8.5.5): where in a frame the image of the body is.

Ultrasound frames carry text, scales and annotations around the B-mode image; the Sequence of
Ultrasound Regions says where each region lies. Models and the evaluation facility crop to the
largest 2D tissue region.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)``, inclusive pixel bounds."""
_TISSUE_2D = 1  # RegionSpatialFormat 2D


def region_from_sequence(ds: Dataset) -> Box | None:
    """``(x0, y0, x1, y1)`` (inclusive) of the largest 2D tissue region, or None."""
    best: Box | None = None
    for item in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            box = (
                int(item.RegionLocationMinX0),
                int(item.RegionLocationMinY0),
                int(item.RegionLocationMaxX1),
                int(item.RegionLocationMaxY1),
            )
        except (AttributeError, TypeError, ValueError):
            continue
        spatial = int(item.get("RegionSpatialFormat", _TISSUE_2D) or 0)
        if spatial != _TISSUE_2D or box[2] <= box[0] or box[3] <= box[1]:
            continue
        if best is None or _area(box) > _area(best):
            best = box
    return best


def _area(box: Box) -> int:
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def clipped(box: Box, rows: int, cols: int) -> Box | None:
    """``box`` clipped to a ``rows`` x ``cols`` frame, or None when nothing of it is left."""
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[2], cols - 1), min(box[3], rows - 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def crop_to_region(pixels: NDArray[Any], ds: Dataset) -> NDArray[Any]:
    """``pixels`` (``[rows, cols, ...]``) cropped to the frame's largest 2D tissue region, or as
    they are when the file names no usable region."""
    box = region_from_sequence(ds)
    inside = None if box is None else clipped(box, pixels.shape[0], pixels.shape[1])
    if inside is None:
        return pixels
    x0, y0, x1, y1 = inside
    return np.asarray(pixels[y0 : y1 + 1, x0 : x1 + 1])
