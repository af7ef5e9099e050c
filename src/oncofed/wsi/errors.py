"""Errors raised by the whole-slide imaging package; each names the offending slide or value."""

from __future__ import annotations

from oncofed.errors import IngestError, OncofedError


class SlideError(IngestError):
    """One slide cannot be used; a batch run records it and goes on with the next slide."""

    code = "slide_error"


class UnsupportedSlideError(SlideError):
    """The file is not a whole-slide image in a format oncofed reads."""

    code = "unsupported_slide"


class CorruptSlideError(SlideError):
    """The slide is truncated or its image data cannot be decoded."""

    code = "corrupt_slide"


class NoPyramidError(SlideError):
    """The slide has a single resolution level, so it cannot be viewed or tiled efficiently."""

    code = "slide_without_pyramid"


class SlideDeidError(SlideError):
    """A slide could not be de-identified, or its de-identified copy failed verification."""

    code = "slide_deid_failed"


class TilingError(OncofedError):
    """A tiling request does not fit the slide (e.g. a finer mpp than the scan, no mpp known)."""

    code = "tiling_error"


class SlideNotFoundError(OncofedError):
    """No slide is known under the requested id."""

    code = "slide_not_found"
