"""Seeded synthetic 3DHistech MIRAX slides: ``NAME.mrxs`` plus a ``NAME/`` folder.

The folder holds ``Slidedat.ini`` (layout and scan facts, with planted fake identifiers),
``Index.dat`` (pointer pages locating every image) and ``Data0000.dat`` (JPEG images: 256x256
camera images per zoom level, each level concatenating 2x2 images of the one below, plus label and
macro images). The layout is the one OpenSlide documents and reads: no overlap, one image per camera
position, no position buffer. No library writes MIRAX, hence this writer.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

from PIL import Image

from oncofed.testing.slide_parts import (
    RGB,
    FakeIdentifiers,
    SyntheticSlide,
    TissuePainter,
    label_image,
    macro_image,
)

IMAGE = 256
INDEX_VERSION = "01.02"
DATA_FILE = "Data0000.dat"
INDEX_FILE = "Index.dat"


def make_mirax_slide(
    path: Path,
    *,
    width: int = 2048,
    height: int = 1536,
    mpp: float = 0.25,
    seed: int = 0,
    pen: bool = False,
    quality: int = 85,
    identifiers: FakeIdentifiers | None = None,
) -> SyntheticSlide:
    """Write ``path`` (``.mrxs``) and its data folder; ``width``/``height`` round up to 256."""
    if path.suffix != ".mrxs":
        raise ValueError(f"{path}: MIRAX slides end in .mrxs")
    ids = identifiers or FakeIdentifiers()
    across, down = math.ceil(width / IMAGE), math.ceil(height / IMAGE)
    painter = TissuePainter(across * IMAGE, down * IMAGE, seed, pen, IMAGE, quality)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=False)
    zoom_levels = max(1, math.ceil(math.log2(max(across, down))) + 1)
    data = bytearray()
    levels: list[list[tuple[int, int, int]]] = []  # per level: (image index, offset, length)
    for level in range(zoom_levels):
        concat = 2**level
        records = []
        for y in range(0, down, concat):
            for x in range(0, across, concat):
                jpeg = _jpeg(
                    painter.render(concat, x // concat * IMAGE, y // concat * IMAGE), quality
                )
                records.append((y * across + x, len(data), len(jpeg)))
                data += jpeg
        levels.append(records)
    associated = []
    for image in (label_image(ids), macro_image(painter, ids)):
        jpeg = _jpeg(image, quality)
        associated.append((len(data), len(jpeg)))
        data += jpeg
    slide_id = f"{seed:08d}-fake-mirax-slide"
    (folder / DATA_FILE).write_bytes(bytes(data))
    (folder / INDEX_FILE).write_bytes(_index(slide_id, levels, associated))
    (folder / "Slidedat.ini").write_text(
        _slidedat(slide_id, across, down, zoom_levels, mpp, ids), encoding="utf-8"
    )
    path.write_bytes(b"")  # the .mrxs itself carries nothing OpenSlide reads
    sizes = tuple((across * IMAGE // 2**lv, down * IMAGE // 2**lv) for lv in range(zoom_levels))
    return SyntheticSlide.drawn(path, "mirax", painter, sizes, mpp, ids)


def _jpeg(image: RGB, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _index(
    slide_id: str, levels: list[list[tuple[int, int, int]]], associated: list[tuple[int, int]]
) -> bytes:
    """Index.dat: version + slide id, a pointer to the per-level list heads, a pointer to the
    per-record (label, macro) list heads; each head is ``0, page pointer``; hierarchical pages
    are ``count, next, (image index, offset, length, file)*``, non-hierarchical ones ``count, next,
    0, 0, offset, length, file``."""
    out = bytearray((INDEX_VERSION + slide_id).encode("ascii"))
    roots_at = len(out)
    out += bytes(8)  # hierarchical root, non-hierarchical root

    def append(*values: int) -> int:
        at = len(out)
        out.extend(struct.pack(f"<{len(values)}i", *values))
        return at

    level_pages = [
        append(len(records), 0, *[v for r in records for v in (*r, 0)]) for records in levels
    ]
    level_heads = [append(0, page) for page in level_pages]
    record_pages = [append(1, 0, 0, 0, offset, length, 0) for offset, length in associated]
    record_heads = [append(0, page) for page in record_pages]
    hier_table = append(*level_heads)
    nonhier_table = append(*record_heads)
    struct.pack_into("<ii", out, roots_at, hier_table, nonhier_table)
    return bytes(out)


def _slidedat(
    slide_id: str, across: int, down: int, zoom_levels: int, mpp: float, ids: FakeIdentifiers
) -> str:
    lines = [
        "[GENERAL]",
        f"SLIDE_ID = {slide_id}",
        f"SLIDE_NAME = {ids.slide_label}",
        f"PROJECT_NAME = {ids.patient_name}",
        f"SLIDE_CREATIONDATETIME = {ids.tiff_datetime}",
        f"SLIDE_BARCODE = {ids.patient_id}",
        f"SCANNER_HARDWARE_ID = {ids.scanner_id}",
        f"IMAGENUMBER_X = {across}",
        f"IMAGENUMBER_Y = {down}",
        f"OBJECTIVE_MAGNIFICATION = {round(10 / mpp)}",
        "",
        "[HIERARCHICAL]",
        "HIER_COUNT = 1",
        "HIER_0_NAME = Slide zoom level",
        f"HIER_0_COUNT = {zoom_levels}",
        *(f"HIER_0_VAL_{lv}_SECTION = LAYER_0_LEVEL_{lv}_SECTION" for lv in range(zoom_levels)),
        "NONHIER_COUNT = 1",
        "NONHIER_0_NAME = Scan data layer",
        "NONHIER_0_COUNT = 2",
        "NONHIER_0_VAL_0 = ScanDataLayer_SlideBarcode",
        "NONHIER_0_VAL_0_SECTION = NONHIERLAYER_0_VAL_0_SECTION",
        "NONHIER_0_VAL_1 = ScanDataLayer_SlideThumbnail",
        "NONHIER_0_VAL_1_SECTION = NONHIERLAYER_0_VAL_1_SECTION",
        f"INDEXFILE = {INDEX_FILE}",
        "",
        "[DATAFILE]",
        "FILE_COUNT = 1",
        f"FILE_0 = {DATA_FILE}",
        "",
        "[NONHIERLAYER_0_VAL_0_SECTION]",
        "BARCODE_IMAGE_TYPE = JPEG",
        f"BARCODE_VALUE = {ids.slide_label}",
        "",
        "[NONHIERLAYER_0_VAL_1_SECTION]",
        "THUMBNAIL_IMAGE_TYPE = JPEG",
        "",
    ]
    for lv in range(zoom_levels):
        lines += [
            f"[LAYER_0_LEVEL_{lv}_SECTION]",
            f"IMAGE_CONCAT_FACTOR = {0 if lv == 0 else 1}",
            "OVERLAP_X = 0",
            "OVERLAP_Y = 0",
            f"MICROMETER_PER_PIXEL_X = {mpp * 2**lv}",
            f"MICROMETER_PER_PIXEL_Y = {mpp * 2**lv}",
            "IMAGE_FILL_COLOR_BGR = 16777215",
            f"DIGITIZER_WIDTH = {IMAGE}",
            f"DIGITIZER_HEIGHT = {IMAGE}",
            "IMAGE_FORMAT = JPEG",
            "",
        ]
    return "\n".join(lines)
