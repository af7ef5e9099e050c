"""Open a whole-slide image of any supported format behind one small reader interface.

Formats: everything OpenSlide reads (Aperio SVS, Hamamatsu NDPI, MIRAX, generic tiled TIFF, ...),
DICOM-WSI (wsidicom) and OME-TIFF (tifffile). Coordinates are always level-0 pixels and regions come
back as RGB ``uint8`` arrays of shape (height, width, 3); areas outside the image are white.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from oncofed.wsi.errors import CorruptSlideError, NoPyramidError, UnsupportedSlideError
from oncofed.wsi.tiles import JpegTilePage, TileCache

RGB = NDArray[np.uint8]
WHITE = 255
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
DICOM_WSI = "dicom-wsi"
OME_TIFF = "ome-tiff"
DICOM_JPEG_BASELINE = "jpeg baseline (process 1)"  # wsidicom's name of 1.2.840.10008.1.2.4.50
DIRECT_TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})  # tiled TIFF pages, one per level


@dataclass(frozen=True)
class Level:
    """One pyramid level: its size in pixels, downsample from level 0 and native tile size."""

    width: int
    height: int
    downsample: float
    tile_width: int
    tile_height: int


class Slide(ABC):
    """A whole-slide image opened for reading; use as a context manager or call ``close``."""

    path: Path
    format: str
    vendor: str | None
    levels: tuple[Level, ...]
    mpp: tuple[float, float] | None
    objective_power: float | None
    compression: str | None
    associated_names: tuple[str, ...]
    properties: Mapping[str, str]
    _direct: list[JpegTilePage | None]

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        return self.levels[0].width, self.levels[0].height

    @abstractmethod
    def _read(self, level: int, lx: int, ly: int, width: int, height: int) -> RGB:
        """Region in level coordinates that lies fully inside the level."""

    @abstractmethod
    def read_associated(self, name: str) -> RGB:
        """An associated image (label, macro, thumbnail, ...) as RGB."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles."""

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> RGB:
        """RGB region of ``level`` whose top-left is (x, y) in level-0 pixels."""
        lv = self.levels[level]
        lx, ly = int(x / lv.downsample), int(y / lv.downsample)
        cx0, cy0 = max(lx, 0), max(ly, 0)
        cx1, cy1 = min(lx + width, lv.width), min(ly + height, lv.height)
        if (cx0, cy0, cx1, cy1) == (lx, ly, lx + width, ly + height):
            return self._read(level, lx, ly, width, height)
        out = np.full((height, width, 3), WHITE, np.uint8)
        if cx1 > cx0 and cy1 > cy0:
            out[cy0 - ly : cy1 - ly, cx0 - lx : cx1 - lx] = self._read(
                level, cx0, cy0, cx1 - cx0, cy1 - cy0
            )
        return out

    def stored_tile(self, level: int, col: int, row: int) -> bytes | None:
        """Native tile (col, row) of ``level`` as the JPEG file it is stored as, not decoded;
        None where it is not stored that way (other codecs, edge or sparse tiles)."""
        direct = self._direct[level]
        return None if direct is None else direct.encoded(col, row)

    def best_level(self, downsample: float) -> int:
        """Index of the coarsest level whose downsample does not exceed ``downsample``."""
        best = 0
        for i, lv in enumerate(self.levels):
            if lv.downsample <= downsample * 1.01:
                best = i
        return best

    def read_level(self, level: int) -> RGB:
        """A whole level; only for small (low-resolution) levels."""
        lv = self.levels[level]
        return self._read(level, 0, 0, lv.width, lv.height)

    def thumbnail(self, max_size: int) -> Image.Image:
        """The whole slide scaled to fit in ``max_size`` x ``max_size``, read from a small level."""
        w, h = self.dimensions
        ds = max(w, h) / max_size
        level = self.best_level(max(ds, 1.0))
        img = Image.fromarray(self.read_level(level))
        img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        return img

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class OpenSlideSlide(Slide):
    """Formats read by OpenSlide (bundled library from ``openslide-bin``)."""

    def __init__(self, path: Path, vendor: str) -> None:
        import openslide

        self.path, self.format, self.vendor = path, vendor, vendor
        try:
            self._osr = openslide.OpenSlide(path)
        except openslide.OpenSlideError as exc:
            raise CorruptSlideError(f"{path}: OpenSlide cannot open it: {exc}") from exc
        props = dict(self._osr.properties)
        self.properties = props
        levels = []
        for i, ((w, h), ds) in enumerate(
            zip(self._osr.level_dimensions, self._osr.level_downsamples, strict=True)
        ):
            tw = int(props.get(f"openslide.level[{i}].tile-width", 256))
            th = int(props.get(f"openslide.level[{i}].tile-height", 256))
            levels.append(Level(w, h, float(ds), tw, th))
        self.levels = tuple(levels)
        mx, my = props.get("openslide.mpp-x"), props.get("openslide.mpp-y")
        self.mpp = (float(mx), float(my)) if mx and my else None
        power = props.get("openslide.objective-power")
        self.objective_power = float(power) if power else None
        self.compression = _tiff_compression(path)
        self.associated_names = tuple(sorted(self._osr.associated_images))
        self._fd: int | None = None
        self._direct = [None] * len(self.levels)
        if vendor in DIRECT_TIFF_VENDORS:
            self._open_direct()

    def _open_direct(self) -> None:
        """Read levels stored as tiled JPEG pages directly (see ``oncofed.wsi.tiles``)."""
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            pages = {}
            for page in tif.pages:
                if not isinstance(page, tifffile.TiffPage):
                    continue
                size = (page.imagewidth, page.imagelength)
                if page.is_tiled and size not in pages:
                    pages[size] = page
            matched = [pages.get((lv.width, lv.height)) for lv in self.levels]
            if not any(p is not None and JpegTilePage.supports(p) for p in matched):
                return
            self._fd = os.open(self.path, os.O_RDONLY)
            cache = TileCache()
            self._direct = [
                JpegTilePage(self._fd, p, i, cache)
                if p is not None and JpegTilePage.supports(p)
                else None
                for i, p in enumerate(matched)
            ]

    def _read(self, level: int, lx: int, ly: int, width: int, height: int) -> RGB:
        direct = self._direct[level]
        if direct is not None:
            return direct.read(lx, ly, width, height)
        ds = self.levels[level].downsample
        loc = (round(lx * ds), round(ly * ds))
        rgba = np.asarray(self._osr.read_region(loc, level, (width, height)))
        if rgba[..., 3].min() == WHITE:
            return np.ascontiguousarray(rgba[..., :3])  # encoders want contiguous pixels
        alpha = rgba[..., 3:].astype(np.uint16)  # premultiplied: composite on white
        return (rgba[..., :3] + (WHITE - alpha)).clip(0, WHITE).astype(np.uint8)

    def read_associated(self, name: str) -> RGB:
        return np.asarray(self._osr.associated_images[name].convert("RGB"))

    def close(self) -> None:
        self._direct = [None] * len(self.levels)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._osr.close()


class TiffSlide(Slide):
    """OME-TIFF (and other tifffile-readable pyramids) read tile-wise through a zarr view."""

    def __init__(self, path: Path) -> None:
        import tifffile
        import zarr

        self.path, self.format, self.vendor = path, OME_TIFF, "ome"
        self._tif = tifffile.TiffFile(path)
        series = self._tif.series[0]
        if series.axes not in ("YXS", "YX"):
            self._tif.close()
            raise UnsupportedSlideError(f"{path}: OME-TIFF axes {series.axes!r}, expected YXS")
        group: Any = zarr.open(series.aszarr(), mode="r")
        arrays: list[Any] = [group[str(i)] for i in range(len(series.levels))]
        w0 = series.levels[0].shape[1]
        self.levels = tuple(
            Level(
                lv.shape[1],
                lv.shape[0],
                w0 / lv.shape[1],
                int(arr.chunks[1]),
                int(arr.chunks[0]),
            )
            for lv, arr in zip(series.levels, arrays, strict=True)
        )
        self._arrays = arrays
        self._fd: int | None = os.open(path, os.O_RDONLY)
        cache = TileCache()
        self._direct = [
            JpegTilePage(self._fd, lv.keyframe, i, cache)
            if JpegTilePage.supports(lv.keyframe)
            else None
            for i, lv in enumerate(series.levels)
        ]
        page = series.levels[0].keyframe
        self.compression = str(tifffile.COMPRESSION(page.compression).name).lower()
        self.mpp = _ome_mpp(self._tif.ome_metadata or "")
        self.objective_power = None
        self._assoc = {s.name.lower(): s for s in self._tif.series[1:] if s.name}
        self.associated_names = tuple(sorted(self._assoc))
        self.properties = {"ome.image-count": str(len(self._tif.series))}

    def _read(self, level: int, lx: int, ly: int, width: int, height: int) -> RGB:
        direct = self._direct[level]
        if direct is not None:
            return direct.read(lx, ly, width, height)
        arr = np.asarray(self._arrays[level][ly : ly + height, lx : lx + width])
        return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)

    def read_associated(self, name: str) -> RGB:
        return np.asarray(self._assoc[name].asarray(), dtype=np.uint8)

    def close(self) -> None:
        self._direct = [None] * len(self.levels)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tif.close()


class DicomSlide(Slide):
    """DICOM-WSI (a folder or the files of one slide) read with wsidicom."""

    def __init__(self, path: Path) -> None:
        from wsidicom import WsiDicom

        self.path, self.format = path, DICOM_WSI
        try:
            self._wsi = WsiDicom.open(path)
        except Exception as exc:  # wsidicom raises many types for bad input
            raise CorruptSlideError(f"{path}: not a readable DICOM-WSI slide: {exc}") from exc
        w0 = self._wsi.size.width
        self._levels = list(self._wsi.levels)
        self.levels = tuple(
            Level(
                lv.size.width,
                lv.size.height,
                w0 / lv.size.width,
                lv.tile_size.width,
                lv.tile_size.height,
            )
            for lv in self._levels
        )
        spacing = self._wsi.mpp
        self.mpp = (float(spacing.width), float(spacing.height)) if spacing else None
        ds = self._levels[0].default_instance.dataset
        self.vendor = str(ds.get("Manufacturer", "")) or None
        power = _first_objective_power(ds)
        self.objective_power = power
        self.compression = _dicom_compression(self._levels[0])
        self._assoc: dict[str, Any] = {}
        if self._wsi.labels:
            self._assoc["label"] = self._wsi.read_label
        if self._wsi.overviews:
            self._assoc["macro"] = self._wsi.read_overview
        self.associated_names = tuple(sorted(self._assoc))
        self.properties = {"dicom.series-uid": str(ds.get("SeriesInstanceUID", ""))}

    def stored_tile(self, level: int, col: int, row: int) -> bytes | None:
        lv = self.levels[level]
        inside = (col + 1) * lv.tile_width <= lv.width and (row + 1) * lv.tile_height <= lv.height
        if self.compression != DICOM_JPEG_BASELINE or col < 0 or row < 0 or not inside:
            return None
        return bytes(self._wsi.read_encoded_tile(self._levels[level].level, (col, row)))

    def _read(self, level: int, lx: int, ly: int, width: int, height: int) -> RGB:
        img = self._wsi.read_region((lx, ly), self._levels[level].level, (width, height))
        return np.asarray(img.convert("RGB"))

    def read_associated(self, name: str) -> RGB:
        return np.asarray(self._assoc[name]().convert("RGB"))

    def close(self) -> None:
        self._wsi.close()


def detect_format(path: Path) -> str:
    """The slide format of ``path``: an OpenSlide vendor name, ``ome-tiff`` or ``dicom-wsi``."""
    import openslide

    if not path.exists():
        raise UnsupportedSlideError(f"{path}: no such file or folder")
    if path.is_dir():
        if any(_is_dicom(p) for p in path.iterdir() if p.is_file()):
            return DICOM_WSI
        raise UnsupportedSlideError(f"{path}: folder holds no DICOM files")
    with path.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return DICOM_WSI
    if head[:4] in TIFF_MAGICS:
        _check_tiff_extents(path)
        if _is_ome(path):
            return OME_TIFF
    try:
        vendor = openslide.OpenSlide.detect_format(path)
    except openslide.OpenSlideError as exc:
        raise CorruptSlideError(f"{path}: unreadable slide file: {exc}") from exc
    if vendor is None:
        kind = "a TIFF without tiles" if head[:4] in TIFF_MAGICS else "not a slide file"
        raise UnsupportedSlideError(
            f"{path}: unsupported slide format ({kind}); oncofed reads OpenSlide formats "
            "(SVS, NDPI, MIRAX, tiled TIFF, ...), DICOM-WSI and OME-TIFF"
        )
    return str(vendor)


def open_slide(path: str | Path, *, check: bool = True) -> Slide:
    """Open a slide of any supported format.

    TIFF-based files must hold every tile they point to. With ``check`` (the default) the slide
    must also have a pyramid and the last tile of every level must decode.
    """
    path = Path(path)
    fmt = detect_format(path)
    slide: Slide
    try:
        if fmt == DICOM_WSI:
            slide = DicomSlide(path)
        elif fmt == OME_TIFF:
            slide = TiffSlide(path)
        else:
            slide = OpenSlideSlide(path, fmt)
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptSlideError(f"{path}: cannot read {fmt} slide: {exc}") from exc
    if check:
        try:
            _check(slide)
        except BaseException:
            slide.close()
            raise
    return slide


def _check(slide: Slide) -> None:
    if len(slide.levels) < 2:
        w, h = slide.dimensions
        raise NoPyramidError(
            f"{slide.path}: {w}x{h} slide has a single resolution level; save it as a tiled "
            "pyramid (e.g. `vips tiffsave IN OUT --tile --pyramid --compression jpeg`)"
        )
    for i, lv in enumerate(slide.levels):
        tw, th = min(lv.tile_width, lv.width), min(lv.tile_height, lv.height)
        try:
            slide._read(i, lv.width - tw, lv.height - th, tw, th)
        except Exception as exc:  # decoders raise many types on truncated data
            raise CorruptSlideError(
                f"{slide.path}: level {i} cannot be decoded (truncated or corrupt): {exc}"
            ) from exc


def _check_tiff_extents(path: Path) -> None:
    """Every strip and tile of every TIFF page must lie inside the file."""
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                offsets = page.dataoffsets
                counts = page.databytecounts
                end = max((o + c for o, c in zip(offsets, counts, strict=True)), default=0)
                if end > size:
                    raise CorruptSlideError(
                        f"{path}: truncated: page {page.index} needs {end} bytes, file has {size}"
                    )
    except tifffile.TiffFileError as exc:
        raise CorruptSlideError(f"{path}: corrupt TIFF structure: {exc}") from exc


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _is_ome(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except tifffile.TiffFileError as exc:
        raise CorruptSlideError(f"{path}: corrupt TIFF structure: {exc}") from exc


def _tiff_compression(path: Path) -> str | None:
    import tifffile

    if not path.is_file():
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            return str(tifffile.COMPRESSION(tif.pages.first.compression).name).lower()
    except tifffile.TiffFileError:
        return None


def _ome_mpp(xml: str) -> tuple[float, float] | None:
    """PhysicalSizeX/Y of the first OME image, converted to micrometres."""
    import xml.etree.ElementTree as ET

    if not xml:
        return None
    units = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
    for el in ET.fromstring(xml).iter():
        if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
            sx = float(el.attrib["PhysicalSizeX"]) * units[el.attrib.get("PhysicalSizeXUnit", "µm")]
            sy = (
                float(el.attrib.get("PhysicalSizeY", sx))
                * units[el.attrib.get("PhysicalSizeYUnit", "µm")]
            )
            return sx, sy
    return None


def _first_objective_power(ds: Any) -> float | None:
    for path in ds.get("OpticalPathSequence", []):
        power = path.get("ObjectiveLensPower")
        if power:
            return float(power)
    return None


def _dicom_compression(level: Any) -> str | None:
    syntax = level.default_instance.image_data.transfer_syntax
    return str(syntax.name).lower() if syntax else None
