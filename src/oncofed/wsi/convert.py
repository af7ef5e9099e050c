"""Normalise a slide to DICOM-WSI (a folder of instances) with wsidicomizer.

Pyramid levels are kept as they are (no level is added or dropped) and JPEG tiles are copied
without re-encoding wherever the source allows it: Aperio SVS, Hamamatsu NDPI, Philips TIFF,
3DHistech TIFF and OME-TIFF through opentile, generic tiled JPEG TIFF through a small opentile
tiler defined here. Other OpenSlide formats (MIRAX, Ventana, ...) are decoded and re-encoded. The
output folder appears atomically: instances are written into a temporary sibling folder, checked
(readable, same levels), then renamed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from oncofed.storage.atomic import fsync_dir
from oncofed.wsi.dicomizer import import_wsidicomizer
from oncofed.wsi.errors import SlideError
from oncofed.wsi.open import DICOM_WSI, TIFF_MAGICS, detect_format, open_slide

UidSource = str | Callable[[], str] | None
GENERIC_TIFF = "generic-tiff"
HAMAMATSU = "hamamatsu"
NDPI_SOURCE_LENS = 65421  # > 0 on stored pyramid levels, -1 macro, -2 map
JPEG = 7
RESOLUTION_UNIT_UM = {2: 25_400.0, 3: 10_000.0}  # inch, centimetre


class SlideConversionError(SlideError):
    """A slide could not be converted to DICOM-WSI, or the converted copy failed its check."""

    code = "slide_conversion_failed"


def convert_to_dicom(
    src: Path,
    out_dir: Path,
    *,
    uid_source: UidSource = None,
    associated: bool = True,
    confidential: bool = True,
    workers: int | None = None,
) -> list[Path]:
    """Write ``src`` as a DICOM-WSI folder ``out_dir`` (which must not exist); return its files.

    ``uid_source`` decides the Study/Series/SOP Instance UIDs: a string seeds reproducible UIDs
    (``2.25.<hash of seed and counter>``; use e.g. a keyed pseudonym of the slide id, so that
    converting the same slide again gives the same UIDs), a callable is asked for each UID, and
    ``None`` gives random UIDs. ``associated=False`` leaves out label and overview (macro) images;
    ``confidential=False`` leaves out metadata wsidicomizer marks as confidential (dates, serial
    numbers, ...). A DICOM-WSI source is refused: it is DICOM already.
    """
    src, out_dir = Path(src), Path(out_dir)
    fmt = detect_format(src)
    if fmt == DICOM_WSI:
        raise SlideConversionError(f"{src}: already a DICOM-WSI slide")
    if out_dir.exists():
        raise SlideConversionError(f"{out_dir}: output already exists")
    with open_slide(src) as slide:
        levels = _stored_levels(src, fmt) or [(lv.width, lv.height) for lv in slide.levels]
        tile = slide.levels[0].tile_width
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dicom-", dir=out_dir.parent))
    try:
        wsidicomizer = import_wsidicomizer()
        preferred = _generic_tiff_source() if _is_generic_jpeg_tiff(src, fmt) else None
        try:
            wsidicomizer.WsiDicomizer.convert(
                src,
                tmp,
                tile_size=tile,
                uid_generator=_uid_generator(uid_source),
                include_label=associated,
                include_overview=associated,
                include_confidential=confidential,
                preferred_source=preferred,
                workers=workers,
            )
        except SlideError:
            raise
        except Exception as exc:  # converters raise many types for input they cannot handle
            raise SlideConversionError(f"{src}: conversion to DICOM-WSI failed: {exc}") from exc
        _check_output(src, tmp, levels)
        for file in tmp.iterdir():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out_dir.iterdir())


def _stored_levels(src: Path, fmt: str) -> list[tuple[int, int]] | None:
    """The levels an NDPI file stores (OpenSlide adds levels decoded at JPEG scales on top)."""
    if fmt != HAMAMATSU or not src.is_file():
        return None
    import tifffile

    with tifffile.TiffFile(src) as tif:
        pages = [page for page in tif.pages if isinstance(page, tifffile.TiffPage)]
        return [
            (page.imagewidth, page.imagelength)
            for page in pages
            if float(getattr(page.tags.get(NDPI_SOURCE_LENS), "value", 0)) > 0
        ]


def _check_output(src: Path, folder: Path, levels: list[tuple[int, int]]) -> None:
    with open_slide(folder) as out:
        got = [(lv.width, lv.height) for lv in out.levels]
    if got != levels:
        raise SlideConversionError(
            f"{src}: DICOM-WSI copy has levels {got}, the source has {levels}"
        )


def _uid_generator(source: UidSource) -> Callable[[], Any]:
    from pydicom.uid import UID

    if callable(source):
        ask = source
        return lambda: UID(ask())
    seed = source if source is not None else uuid.uuid4().hex
    counter = iter(range(1 << 62))

    def derive() -> UID:
        digest = hashlib.sha256(f"oncofed/wsi/dicom-uid\0{seed}\0{next(counter)}".encode())
        return UID("2.25." + str(int.from_bytes(digest.digest()[:16], "big")))

    return derive


def _is_generic_jpeg_tiff(path: Path, fmt: str) -> bool:
    """A generic tiled TIFF pyramid whose level-0 tiles are JPEG (tiles can be copied)."""
    import tifffile

    if fmt != GENERIC_TIFF or not path.is_file():
        return False
    with path.open("rb") as fh:
        if fh.read(4) not in TIFF_MAGICS:
            return False
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.levels[0].keyframe
        return bool(page.is_tiled and page.compression == JPEG and len(series.levels) > 1)


@cache
def _generic_tiff_source() -> type[Any]:
    """A wsidicomizer source for generic tiled JPEG TIFF pyramids that copies tile bytes.

    opentile reads vendor TIFFs tile by tile without decoding; its OME-TIFF tiler works for any
    tiled pyramid once the pixel size comes from the TIFF resolution tags instead of OME-XML.
    """
    import_wsidicomizer()
    from opentile.file import OpenTileFile
    from opentile.formats.ome.ome_tiff_tiler import OmeTiffTiler
    from opentile.geometry import SizeMm
    from wsidicomizer.dicomizer_source import DicomizerSource
    from wsidicomizer.sources.opentile.opentile_metadata import OpenTileMetadata
    from wsidicomizer.sources.opentile.opentile_source import OpenTileSource
    from wsidicomizer.wsi_format import WsiFormat

    class GenericTiffTiler(OmeTiffTiler):  # type: ignore[misc]
        @classmethod
        def supported(cls, tiff_file: Any) -> bool:
            return True

        @staticmethod
        def _is_level_series(series: Any) -> bool:
            return bool(series.index == 0)

        @staticmethod
        def _is_label_series(series: Any) -> bool:
            return False

        @staticmethod
        def _is_overview_series(series: Any) -> bool:
            return False

        @staticmethod
        def _is_thumbnail_series(series: Any) -> bool:
            return False

        def _get_optional_mpp(self, series_index: int) -> Any:
            tags = self._file.series[series_index].pages[0].tags
            unit = RESOLUTION_UNIT_UM.get(int(tags.get(296).value) if 296 in tags else 2)
            xres, yres = tags.get(282), tags.get(283)
            if unit is None or xres is None or yres is None:
                return None
            (xn, xd), (yn, yd) = xres.value, yres.value
            if not (xn and yn):
                return None
            return SizeMm(unit * xd / xn, unit * yd / yn)

    class GenericTiffSource(OpenTileSource):  # type: ignore[misc]
        def __init__(
            self,
            filepath: Path,
            encoder: Any,
            tile_size: int | None = None,
            metadata: Any = None,
            default_metadata: Any = None,
            include_confidential: bool = True,
            metadata_post_processor: Any = None,
            force_transcoding: bool = False,
            uid_generator: Any = None,
        ) -> None:
            self._tiler = GenericTiffTiler(OpenTileFile(filepath, None))
            self._wsi_format = WsiFormat.GENERIC
            self._base_metadata = OpenTileMetadata(
                self._tiler.metadata,
                False,
                False,
                self._tiler.icc_profile,
                wsi_format=self._wsi_format,
            )
            self._force_transcoding = force_transcoding
            DicomizerSource.__init__(
                self,
                filepath,
                encoder,
                tile_size,
                metadata,
                default_metadata,
                include_confidential,
                metadata_post_processor,
                uid_generator,
            )

        @staticmethod
        def is_supported(path: Path) -> bool:
            return _is_generic_jpeg_tiff(path, GENERIC_TIFF)

    return GenericTiffSource
