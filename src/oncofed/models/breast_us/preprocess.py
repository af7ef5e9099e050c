"""Ultrasound image to model input: crop to the imaging region, grey, resize, scale to [0, 1].

The imaging region comes from the Sequence of Ultrasound Regions when the file has one (the
largest 2D tissue region); otherwise it is the bounding box of the largest bright connected area
(text and scales are thin strokes, the B-mode image is one large blob).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from scipy import ndimage
from skimage.transform import resize

from oncofed.errors import OncofedError
from oncofed.ultrasound import Box, clipped, region_from_sequence

INPUT_SIZE = 64
"""Default side of the square model input."""
_HEURISTIC_LEVEL = 8  # grey level above which a pixel may belong to the B-mode image
_HEURISTIC_CLOSING = 5  # pixels: bridge speckle's dark gaps before finding the largest area


class UltrasoundImageError(OncofedError):
    """A file is not a usable ultrasound image."""

    code = "invalid_ultrasound_image"


def read_grey(ds: Dataset, source: str) -> NDArray[np.float64]:
    """The first frame of ``ds`` as 8-bit grey levels (colour images: channel mean)."""
    if int(ds.get("BitsStored", 8) or 8) > 8:
        raise UltrasoundImageError(
            f"{source}: BitsStored {ds.BitsStored}; the ultrasound pipeline reads 8-bit images"
        )
    try:
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise UltrasoundImageError(f"{source}: pixel data cannot be decoded ({exc})") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        pixels = pixels.mean(axis=-1)
    if pixels.ndim != 2:
        raise UltrasoundImageError(f"{source}: expected a 2D image, got shape {pixels.shape}")
    return pixels


def region_by_heuristic(grey: NDArray[np.float64]) -> Box:
    """Bounding box of the largest bright area once thin strokes (text, scales) are opened away
    and speckle's dark gaps closed."""
    opened = ndimage.binary_opening(grey > _HEURISTIC_LEVEL, np.ones((3, 3), dtype=bool))
    foreground = ndimage.binary_closing(
        opened, np.ones((_HEURISTIC_CLOSING, _HEURISTIC_CLOSING), dtype=bool)
    )
    labels, count = ndimage.label(foreground)
    if count == 0:
        rows, cols = grey.shape
        return (0, 0, cols - 1, rows - 1)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    ys, xs = np.nonzero(labels == largest)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def imaging_region(ds: Dataset, grey: NDArray[np.float64]) -> Box:
    """The region to crop: from the region sequence when present, else by heuristic; clipped."""
    rows, cols = grey.shape
    box = region_from_sequence(ds) or region_by_heuristic(grey)
    return clipped(box, rows, cols) or (0, 0, cols - 1, rows - 1)


def region_pixels(ds: Dataset, source: str = "image") -> NDArray[np.float64]:
    """The imaging region's grey levels at full resolution."""
    grey = read_grey(ds, source)
    x0, y0, x1, y1 = imaging_region(ds, grey)
    return grey[y0 : y1 + 1, x0 : x1 + 1]


def prepare(ds: Dataset, *, size: int = INPUT_SIZE, source: str = "image") -> NDArray[np.float32]:
    """``[1, size, size]`` float32 in [0, 1]: the imaging region, resized, grey levels / 255."""
    return to_input(region_pixels(ds, source), size)


def to_input(crop: NDArray[Any], size: int) -> NDArray[np.float32]:
    """Resize a grey crop to ``[1, size, size]`` and scale 8-bit levels to [0, 1]."""
    resized = resize(crop, (size, size), order=1, anti_aliasing=True, preserve_range=True)  # type: ignore[no-untyped-call]
    return np.asarray(np.clip(resized / 255.0, 0.0, 1.0)[None], dtype=np.float32)


def read_dicom(path: Path) -> Dataset:
    """Read a DICOM file; a clear error if it is not one."""
    try:
        return pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise UltrasoundImageError(f"{path}: not a readable DICOM file ({exc})") from exc


def load_input(path: Path, *, size: int = INPUT_SIZE) -> NDArray[np.float32]:
    """Read a DICOM file and :func:`prepare` it."""
    return prepare(read_dicom(path), size=size, source=str(path))
