"""Seeded synthetic whole-slide images: pyramidal tiled TIFF, SVS-like, OME-TIFF and DICOM-WSI.

Slides show pink/purple H&E-like tissue blobs on a bright background, optionally a blue/green pen
mark, and carry obviously fake identifiers (in metadata and on label/macro images) so that tests can
check de-identification by searching output bytes for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from oncofed.testing.slide_parts import (
    BACKGROUND,
    FakeIdentifiers,
    Painter,
    SyntheticSlide,
    TissuePainter,
    jpeg_encode,
    label_image,
    level_dims,
    macro_image,
    overview,
)

__all__ = [
    "BACKGROUND",
    "FakeIdentifiers",
    "Kind",
    "Painter",
    "SyntheticSlide",
    "jpeg_encode",
    "make_dicom_slide",
    "make_slide",
    "write_slide",
]

Kind = Literal["svs", "tiff", "ome"]
APERIO_HEADER = "Aperio Image Library v12.0.15"


def _tiles(painter: Painter, downsample: int, width: int, height: int) -> Iterator[bytes]:
    t = painter.tile
    for y in range(0, height, t):
        for x in range(0, width, t):
            yield painter.encoded(downsample, x, y)


def make_slide(
    path: Path,
    kind: Kind = "svs",
    *,
    width: int = 4096,
    height: int = 3072,
    mpp: float = 0.25,
    tile: int = 256,
    seed: int = 0,
    pen: bool = False,
    quality: int = 80,
    identifiers: FakeIdentifiers | None = None,
) -> SyntheticSlide:
    """Write a seeded synthetic slide of the given kind to ``path`` and describe it.

    ``svs``: Aperio-like (4x pyramid, thumbnail, label and macro pages, identifying description).
    ``tiff``: generic pyramidal tiled TIFF (2x pyramid, resolution tags, identifying tags).
    ``ome``: OME-TIFF with a SubIFD pyramid and label/macro images as extra OME images.
    """
    painter = TissuePainter(width, height, seed, pen, tile, quality)
    return write_slide(
        path, kind, painter, width=width, height=height, mpp=mpp, identifiers=identifiers
    )


def write_slide(
    path: Path,
    kind: Kind,
    painter: Painter,
    *,
    width: int,
    height: int,
    mpp: float,
    identifiers: FakeIdentifiers | None = None,
) -> SyntheticSlide:
    """Write the slide ``painter`` draws as ``kind`` (see :func:`make_slide`) and describe it."""
    ids = identifiers or FakeIdentifiers()
    levels = level_dims(width, height, 4 if kind == "svs" else 2, painter.tile)
    job = _Job(path, painter, levels, mpp, ids)
    if kind == "svs":
        _write_svs(job)
    elif kind == "tiff":
        _write_generic(job)
    else:
        _write_ome(job)
    sizes = tuple((w, h) for _, w, h in levels)
    return SyntheticSlide.drawn(path, kind, painter, sizes, mpp, ids)


@dataclass(frozen=True)
class _Job:
    """A TIFF slide to write: where, what draws it, its levels (downsample, width, height)."""

    path: Path
    painter: Painter
    levels: list[tuple[int, int, int]]
    mpp: float
    ids: FakeIdentifiers

    def writer(self, **options: Any) -> tifffile.TiffWriter:
        """A TIFF writer for ``path``: BigTIFF when level 0 is too large for classic TIFF."""
        _, w0, h0 = self.levels[0]
        return tifffile.TiffWriter(self.path, bigtiff=w0 * h0 > 2**31, **options)


def _tiled(painter: Painter, ds: int, w: int, h: int) -> dict[str, object]:
    return {
        "data": _tiles(painter, ds, w, h),
        "shape": (h, w, 3),
        "dtype": np.uint8,
        "tile": (painter.tile, painter.tile),
        "compression": "jpeg",
        "photometric": "rgb",
    }


def _write_svs(job: _Job) -> None:
    painter, levels, mpp, ids = job.painter, job.levels, job.mpp, job.ids
    _, w0, h0 = levels[0]
    fields = (
        f"AppMag = {round(10 / mpp)}|StripeWidth = 2040|ScanScope ID = {ids.scanner_id}"
        f"|Filename = {ids.filename}|Date = {ids.date}|Time = 13:45:07|Time Zone = GMT+01:00"
        f"|User = {ids.patient_name}|Patient = {ids.patient_name}|PatientID = {ids.patient_id}"
        f"|Barcode = {ids.slide_label}|MPP = {mpp}|Left = 25.0|Top = 18.5|LineCameraSkew = 0.0"
    )
    head = f"{APERIO_HEADER}\r\n{w0}x{h0} [0,0 {w0}x{h0}] ({painter.tile}x{painter.tile})"
    thumb_ds = max(1, math.ceil(max(w0, h0) / 768))
    thumb = overview(painter, w0 // thumb_ds, h0 // thumb_ds)
    extra = [(306, "s", 0, ids.tiff_datetime, True)]
    with job.writer() as tif:
        tif.write(
            **_tiled(painter, 1, w0, h0),  # type: ignore[arg-type]
            metadata=None,
            description=f"{head} JPEG/RGB Q={painter.quality}|{fields}",
            extratags=extra,
            software=False,
        )
        tif.write(
            thumb,
            compression="jpeg",
            photometric="rgb",
            metadata=None,
            description=f"{head} -> {thumb.shape[1]}x{thumb.shape[0]} - |{fields}",
            software=False,
        )
        for ds, w, h in levels[1:]:
            tif.write(
                **_tiled(painter, ds, w, h),  # type: ignore[arg-type]
                metadata=None,
                description=f"{head} -> {w}x{h} JPEG/RGB Q={painter.quality}|{fields}",
                software=False,
            )
        associated = (
            ("label", label_image(ids), "lzw", 1),
            ("macro", macro_image(painter, ids), "jpeg", 9),
        )
        for name, image, compression, subfiletype in associated:
            tif.write(
                image,
                compression=compression,
                photometric="rgb",
                metadata=None,
                subfiletype=subfiletype,
                description=f"{APERIO_HEADER}\r\n{name} {image.shape[1]}x{image.shape[0]}",
                software=False,
            )


def _write_generic(job: _Job) -> None:
    painter, levels, mpp, ids = job.painter, job.levels, job.mpp, job.ids
    extra = [
        (306, "s", 0, ids.tiff_datetime, True),
        (315, "s", 0, ids.patient_name, True),
        (316, "s", 0, ids.scanner_id, True),
        (269, "s", 0, ids.filename, True),
    ]
    with job.writer() as tif:
        for i, (ds, w, h) in enumerate(levels):
            res = 1e4 / (mpp * ds)
            tif.write(
                **_tiled(painter, ds, w, h),  # type: ignore[arg-type]
                subfiletype=0 if i == 0 else 1,
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                metadata=None,
                description=f"{ids.slide_label} patient={ids.patient_name} id={ids.patient_id}"
                if i == 0
                else None,
                extratags=extra if i == 0 else (),
                software=False,
            )


def _write_ome(job: _Job) -> None:
    painter, levels, mpp, ids = job.painter, job.levels, job.mpp, job.ids
    _, w0, h0 = levels[0]
    with job.writer(ome=True) as tif:
        res = 1e4 / mpp
        tif.write(
            **_tiled(painter, 1, w0, h0),  # type: ignore[arg-type]
            subifds=len(levels) - 1,
            resolution=(res, res),
            resolutionunit="CENTIMETER",
            metadata={
                "axes": "YXS",
                "Name": f"{ids.slide_label} {ids.patient_name}",
                "PhysicalSizeX": mpp,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": mpp,
                "PhysicalSizeYUnit": "µm",
            },
            extratags=[(306, "s", 0, ids.tiff_datetime, True)],
            software=False,
        )
        for ds, w, h in levels[1:]:
            tif.write(**_tiled(painter, ds, w, h), subfiletype=1, software=False)  # type: ignore[arg-type]
        for name, image in (("label", label_image(ids)), ("macro", macro_image(painter, ids))):
            tif.write(
                image,
                compression="jpeg",
                photometric="rgb",
                metadata={"axes": "YXS", "Name": name},
                software=False,
            )


def make_dicom_slide(
    folder: Path,
    *,
    width: int = 4096,
    height: int = 3072,
    mpp: float = 0.25,
    seed: int = 0,
    pen: bool = False,
    identifiers: FakeIdentifiers | None = None,
) -> SyntheticSlide:
    """Write a DICOM-WSI slide (pyramid, label, overview) converted with wsidicomizer.

    The fake patient name, id, slide id, scanner serial and study date go into the DICOM
    attributes; UIDs are derived from ``seed`` so the output is reproducible.
    """
    from pydicom import Dataset
    from pydicom.uid import UID, generate_uid

    from oncofed.wsi.dicomizer import import_wsidicomizer

    # never `import wsidicomizer` directly: it changes pydicom's configuration process-wide
    WsiDicomizer = import_wsidicomizer().WsiDicomizer

    ids = identifiers or FakeIdentifiers()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / ".source.svs"
    slide = make_slide(
        source, "svs", width=width, height=height, mpp=mpp, seed=seed, pen=pen, identifiers=ids
    )
    extra = Dataset()
    extra.PatientName = ids.patient_name
    extra.PatientID = ids.patient_id
    extra.ContainerIdentifier = ids.slide_label
    extra.DeviceSerialNumber = ids.scanner_id
    extra.StudyDate = "20211231"
    extra.AccessionNumber = ids.patient_id
    counter = iter(range(1_000_000))

    def uids() -> UID:
        return generate_uid(entropy_srcs=[str(seed), str(next(counter))])

    try:
        WsiDicomizer.convert(
            source, folder, metadata_post_processor=extra, tile_size=256, uid_generator=uids
        )
    finally:
        source.unlink()
    return replace(slide, path=folder, kind="dicom")
