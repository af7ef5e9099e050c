"""Tissue detection on a low-resolution level: saturation Otsu, pen-mark and dark-debris removal,
small-object removal and hole filling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.filters import threshold_otsu

from oncofed.wsi.open import RGB, Slide

MASK_MAX_SIZE = 2048
MIN_SATURATION = 0.07
PEN_HUE = (60.0, 255.0)
PEN_SATURATION = 0.3
DARK_VALUE = 0.15
MIN_OBJECT_FRACTION = 1e-4


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask of one level; ``downsample`` maps mask pixels to level-0 pixels."""

    mask: NDArray[np.bool_]
    level: int
    downsample: tuple[float, float]

    @property
    def fraction(self) -> float:
        """Share of the slide covered by tissue."""
        return float(self.mask.mean())


def detect_tissue(slide: Slide, *, max_size: int = MASK_MAX_SIZE) -> TissueMask:
    """Tissue mask from the finest level that fits in ``max_size`` (or the coarsest level)."""
    level = len(slide.levels) - 1
    for i, lv in enumerate(slide.levels):
        if max(lv.width, lv.height) <= max_size:
            level = i
            break
    rgb = slide.read_level(level)
    w0, h0 = slide.dimensions
    return TissueMask(tissue_mask(rgb), level, (w0 / rgb.shape[1], h0 / rgb.shape[0]))


def tissue_mask(rgb: RGB) -> NDArray[np.bool_]:
    """Tissue pixels of a low-resolution RGB image, robust to background, pen marks and dirt."""
    img = rgb.astype(np.float32) / 255.0
    vmax, vmin = img.max(axis=2), img.min(axis=2)
    chroma = vmax - vmin
    sat = np.divide(chroma, vmax, out=np.zeros_like(vmax), where=vmax > 0)
    pen = (sat > PEN_SATURATION) & _in_hue(img, vmax, chroma, *PEN_HUE)
    pen |= vmax < DARK_VALUE
    pen = ndimage.binary_dilation(pen, iterations=2)
    candidates = sat[~pen]
    threshold = MIN_SATURATION
    if candidates.size and np.ptp(candidates) > 0:
        threshold = max(float(threshold_otsu(candidates)), MIN_SATURATION)  # type: ignore[no-untyped-call]
    mask = (sat > threshold) & ~pen
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = ndimage.binary_closing(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(4, MIN_OBJECT_FRACTION * mask.size)
        keep[0] = False
        mask = keep[labels]
    return np.asarray(mask, dtype=bool)


def _in_hue(
    img: NDArray[np.float32],
    vmax: NDArray[np.float32],
    chroma: NDArray[np.float32],
    lo: float,
    hi: float,
) -> NDArray[np.bool_]:
    """Pixels whose HSV hue (degrees) lies in [lo, hi]."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    c = np.where(chroma > 0, chroma, 1.0)
    hue = (
        np.where(
            vmax == r,
            ((g - b) / c) % 6.0,
            np.where(vmax == g, (b - r) / c + 2.0, (r - g) / c + 4.0),
        )
        * 60.0
    )
    return np.asarray((chroma > 0) & (hue >= lo) & (hue <= hi))
