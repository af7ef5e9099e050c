"""Seeded synthetic Hamamatsu NDPI slides, laid out like the scanner writes them.

An NDPI file is a little-endian classic TIFF whose header and IFDs carry 64-bit offsets: the first
IFD offset is 8 bytes, every IFD's next-IFD field is 8 bytes, and a block of 4 high-order bytes per
entry follows it. Each pyramid level is one JPEG strip with restart markers (readers index tiles by
restart interval); the macro image is a level with source lens -1. No library writes this layout
(tifffile reads it, libtiff reads the 32-bit subset), so the writer below is hand-made. Identifying
values are planted in the vendor tags (reference, scanner serial, property map) and on the macro
image, so de-identification can be checked byte by byte.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from oncofed.testing.slide_parts import (
    RGB,
    FakeIdentifiers,
    SyntheticSlide,
    TissuePainter,
    level_dims,
    macro_image,
)

FORMAT_FLAG, SOURCE_LENS, X_OFFSET, Y_OFFSET, FOCAL_PLANE = 65420, 65421, 65422, 65423, 65424
REFERENCE, SCANNER_SERIAL, PROPERTY_MAP = 65427, 65442, 65449
MACRO_LENS = -1.0
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SLONG, _FLOAT = 1, 2, 3, 4, 5, 9, 11
_SIZES = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SLONG: 4, _FLOAT: 4}
_FORMATS = {_BYTE: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "I", _SLONG: "i", _FLOAT: "f"}
# 4:4:4 (one MCU is 8 x 8 pixels): OpenSlide's bundled libjpeg rejects Pillow's 4:2:0 restart
# intervals ("found marker 0xd9 instead of RST0") although djpeg decodes them cleanly.
_MCU = 8
_RESTART_MCUS = 16  # tiles of 128 pixels wide, as readers see them


@dataclass(frozen=True)
class _Entry:
    tag: int
    kind: int
    values: tuple[float, ...] | bytes

    def payload(self) -> bytes:
        if isinstance(self.values, bytes):
            return self.values
        return struct.pack(f"<{len(self.values)}{_FORMATS[self.kind]}", *self.values)

    def count(self) -> int:
        return len(self.payload()) // _SIZES[self.kind]


def make_ndpi_slide(
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
    """Write a seeded NDPI slide (4x pyramid, macro image, identifying vendor tags)."""
    ids = identifiers or FakeIdentifiers()
    painter = TissuePainter(width, height, seed, pen, 256, quality)
    levels = level_dims(width, height, 4, 256)
    magnification = round(10 / mpp)
    pages: list[tuple[bytes, list[_Entry]]] = []
    for ds, w, h in levels:
        strip = _restart_jpeg(_paint(painter, ds, w, h), quality)
        pages.append((strip, _level_tags(w, h, mpp * ds, float(magnification), ids)))
    macro = macro_image(painter, ids)
    strip = _restart_jpeg(macro, quality)
    pages.append((strip, _level_tags(macro.shape[1], macro.shape[0], 0.0, MACRO_LENS, ids)))
    path.write_bytes(_ndpi_bytes(pages))
    sizes = tuple((w, h) for _, w, h in levels)
    return SyntheticSlide.drawn(path, "ndpi", painter, sizes, mpp, ids)


def _paint(painter: TissuePainter, ds: int, w: int, h: int) -> RGB:
    """A whole level assembled from the painter's tiles (NDPI levels are one image each)."""
    t = painter.tile
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, t):
        for x in range(0, w, t):
            tile = painter.render(ds, x, y)
            out[y : y + t, x : x + t] = tile[: min(t, h - y), : min(t, w - x)]
    return out


def _restart_jpeg(image: RGB, quality: int) -> bytes:
    """Baseline 4:4:4 JPEG with a restart marker every few MCUs (Pillow writes them)."""
    mcus_per_row = -(-image.shape[1] // _MCU)
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        "JPEG",
        quality=quality,
        subsampling=0,
        restart_marker_blocks=min(_RESTART_MCUS, mcus_per_row),
    )
    return buffer.getvalue()


def _level_tags(w: int, h: int, mpp: float, lens: float, ids: FakeIdentifiers) -> list[_Entry]:
    per_cm = round(1e4 / mpp) if mpp else 1
    properties = (
        f"[NDP.S/N]={ids.scanner_id}\r\nPatientName={ids.patient_name}\r\n"
        f"PatientID={ids.patient_id}\r\nDate={ids.date}\r\n"
    )
    return [
        _Entry(256, _LONG, (w,)),
        _Entry(257, _LONG, (h,)),
        _Entry(258, _SHORT, (8, 8, 8)),
        _Entry(259, _SHORT, (7,)),  # JPEG
        _Entry(262, _SHORT, (6,)),  # YCbCr
        _Entry(271, _ASCII, b"Hamamatsu\0"),
        _Entry(272, _ASCII, b"C13210\0"),
        _Entry(273, _LONG, (0,)),  # strip offset, patched when the layout is known
        _Entry(277, _SHORT, (3,)),
        _Entry(278, _LONG, (h,)),
        _Entry(279, _LONG, (0,)),  # strip byte count, patched as well
        _Entry(282, _RATIONAL, (per_cm, 1)),
        _Entry(283, _RATIONAL, (per_cm, 1)),
        _Entry(296, _SHORT, (3,)),  # centimetre
        _Entry(305, _ASCII, b"NDP.scan 3.4.0\0"),
        _Entry(306, _ASCII, ids.tiff_datetime.encode() + b"\0"),
        _Entry(FORMAT_FLAG, _LONG, (1,)),
        _Entry(SOURCE_LENS, _FLOAT, (lens,)),
        _Entry(X_OFFSET, _SLONG, (0,)),
        _Entry(Y_OFFSET, _SLONG, (0,)),
        _Entry(FOCAL_PLANE, _SLONG, (0,)),
        _Entry(REFERENCE, _ASCII, ids.slide_label.encode() + b"\0"),
        _Entry(SCANNER_SERIAL, _ASCII, ids.scanner_id.encode() + b"\0"),
        _Entry(PROPERTY_MAP, _ASCII, properties.encode() + b"\0"),
    ]


def _ndpi_bytes(pages: list[tuple[bytes, list[_Entry]]]) -> bytes:
    """Header, then per page: strip, out-of-line values, IFD (64-bit next offset + high bytes)."""
    out = bytearray(b"II*\0" + struct.pack("<Q", 0))
    next_field = 4  # where the previous "next IFD" offset goes
    for strip, entries in pages:
        strip_at = _append(out, strip)
        entries = [_patched(e, strip_at, len(strip)) for e in entries]
        values_at = {e.tag: _append(out, e.payload()) for e in entries if len(e.payload()) > 4}
        ifd_at = _append(out, b"")
        struct.pack_into("<Q", out, next_field, ifd_at)
        out += struct.pack("<H", len(entries))
        for e in sorted(entries, key=lambda item: item.tag):
            inline = e.payload() if e.tag not in values_at else struct.pack("<I", values_at[e.tag])
            out += struct.pack("<HHI", e.tag, e.kind, e.count()) + inline.ljust(4, b"\0")
        next_field = len(out)
        out += struct.pack("<Q", 0) + bytes(4 * len(entries))
    return bytes(out)


def _patched(entry: _Entry, strip_at: int, strip_bytes: int) -> _Entry:
    if entry.tag == 273:
        return _Entry(273, _LONG, (strip_at,))
    if entry.tag == 279:
        return _Entry(279, _LONG, (strip_bytes,))
    return entry


def _append(out: bytearray, data: bytes) -> int:
    """Append ``data`` at the next word boundary; return where it starts."""
    if len(out) % 2:
        out += b"\0"
    at = len(out)
    out += data
    return at
