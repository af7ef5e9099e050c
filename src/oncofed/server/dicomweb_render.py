"""Rendered frames: pixel data → modality LUT → window → 8-bit JPEG or PNG (via Pillow)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.utils import pixel_array

from oncofed.server.dicomweb_common import DicomwebProblem, MediaRange
from oncofed.server.dicomweb_frames import PixelSource

RENDERED_TYPES = ("image/jpeg", "image/png")
MAX_VIEWPORT = 8192


@dataclass(frozen=True)
class RenderOptions:
    """Query parameters of a rendered request."""

    window: tuple[float, float] | None = None
    quality: int = 90
    viewport: tuple[int, int] | None = None


def parse_options(params: dict[str, str]) -> RenderOptions:
    """``window=center,width[,linear]``, ``quality=1..100``, ``viewport=w,h``; 400 if malformed."""
    try:
        window = None
        if params.get("window"):
            center, width, *_ = params["window"].split(",")
            window = (float(center), float(width))
        quality = int(params.get("quality", "90"))
        viewport = None
        if params.get("viewport"):
            vw, vh, *_ = params["viewport"].split(",")
            viewport = (int(vw), int(vh))
    except ValueError:
        raise DicomwebProblem(400, "invalid_query", "bad window, quality or viewport") from None
    if window and not (all(map(math.isfinite, window)) and window[1] > 0):
        raise DicomwebProblem(400, "invalid_query", "window must be finite, with width > 0")
    if not 1 <= quality <= 100:
        raise DicomwebProblem(400, "invalid_query", "quality must be 1..100")
    if viewport and not all(1 <= side <= MAX_VIEWPORT for side in viewport):
        raise DicomwebProblem(400, "invalid_query", f"viewport sides must be 1..{MAX_VIEWPORT}")
    return RenderOptions(window, quality, viewport)


def choose_type(ranges: list[MediaRange]) -> str:
    """image/jpeg unless the client asks for image/png; 406 for anything else."""
    for media in ranges:
        for candidate in RENDERED_TYPES:
            if media.matches(candidate):
                return candidate
    raise DicomwebProblem(406, "not_acceptable", "rendered images are image/jpeg or image/png")


def render(source: PixelSource, number: int, media_type: str, options: RenderOptions) -> bytes:
    """Frame ``number`` of ``source`` as an encoded 8-bit image."""
    try:
        array = pixel_array(str(source.path), index=number - 1)
    except Exception as exc:
        raise DicomwebProblem(406, "not_acceptable", f"cannot decode pixel data: {exc}") from None
    header = source.header
    if int(header.get("SamplesPerPixel", 1) or 1) == 1:
        image = Image.fromarray(_grey(array, header, options.window), mode="L")
    else:
        image = Image.fromarray(_to_uint8(array.astype(np.float64), header), mode="RGB")
    if options.viewport:
        image.thumbnail(options.viewport)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()


def _first(value: Any) -> float | None:
    """The first value of a possibly multi-valued number."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _functional(header: Dataset, sequence: str, keyword: str) -> Any:
    """A value from the header or its shared functional groups (enhanced multi-frame)."""
    if keyword in header:
        return header.get(keyword)
    for group in header.get("SharedFunctionalGroupsSequence", []):
        for item in group.get(sequence, []):
            if keyword in item:
                return item.get(keyword)
    return None


def _grey(
    array: NDArray[Any], header: Dataset, window: tuple[float, float] | None
) -> NDArray[np.uint8]:
    slope = _first(_functional(header, "PixelValueTransformationSequence", "RescaleSlope")) or 1.0
    intercept = _first(_functional(header, "PixelValueTransformationSequence", "RescaleIntercept"))
    values = array.astype(np.float64) * slope + (intercept or 0.0)
    if window is None:
        center = _first(_functional(header, "FrameVOILUTSequence", "WindowCenter"))
        width = _first(_functional(header, "FrameVOILUTSequence", "WindowWidth"))
        window = (center, width) if center is not None and width and width > 0 else None
    if window is None:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    scaled = (values - low) / max(high - low, 1e-9) * 255.0
    grey = np.clip(scaled, 0, 255).astype(np.uint8)
    if str(header.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _to_uint8(array: NDArray[np.float64], header: Dataset) -> NDArray[np.uint8]:
    bits = int(header.get("BitsStored", 8) or 8)
    if bits > 8:
        array = array / float((1 << bits) - 1) * 255.0
    return np.clip(array, 0, 255).astype(np.uint8)
