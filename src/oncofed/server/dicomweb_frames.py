"""Frames of stored pixel data: native frames by seeking, compressed frames as stored."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from oncofed.server.dicomweb_common import OCTET_STREAM, DicomwebProblem, MediaRange

_FRAME_LIST = re.compile(r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$")
_SEEKABLE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_MEDIA_OF_TS = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` → [1, 3, 5]; 400 for anything else."""
    if not _FRAME_LIST.match(text):
        raise DicomwebProblem(400, "invalid_frame_list", f"not a frame list: {text!r}")
    return [int(n) for n in text.split(",")]


@dataclass(frozen=True)
class PixelSource:
    """Where a stored instance's pixel data starts and how it is encoded."""

    path: Path
    header: Dataset
    transfer_syntax: str
    frames: int
    value_offset: int
    implicit: bool

    @property
    def media_type(self) -> str:
        """The media type of one frame as stored."""
        if UID(self.transfer_syntax).is_encapsulated:
            return _MEDIA_OF_TS.get(self.transfer_syntax, OCTET_STREAM)
        return OCTET_STREAM

    def frame_bytes(self) -> int:
        """The size of one native frame in bytes."""
        h = self.header
        samples = int(h.get("SamplesPerPixel", 1) or 1)
        bits = int(h.BitsAllocated) * int(h.Rows) * int(h.Columns) * samples
        return bits // 8


def open_pixels(path: Path) -> PixelSource:
    """Read the header and locate the Pixel Data value; 404 when there is none."""
    with path.open("rb") as handle:
        header = pydicom.dcmread(handle, stop_before_pixels=True)
        start = handle.tell()
        head = handle.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
        raise DicomwebProblem(404, "not_found", "this instance has no pixel data")
    ts = str(header.file_meta.TransferSyntaxUID)
    implicit = ts == "1.2.840.10008.1.2"
    frames = int(header.get("NumberOfFrames", 1) or 1)
    offset = start + (8 if implicit else 12)
    return PixelSource(path, header, ts, frames, offset, implicit)


def check_frames(source: PixelSource, numbers: list[int]) -> None:
    """404 when a requested frame does not exist."""
    missing = [n for n in numbers if n > source.frames]
    if missing:
        raise DicomwebProblem(
            404, "not_found", f"frame {missing[0]} does not exist ({source.frames} frames)"
        )


def stored_frame(source: PixelSource, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored: native bytes, or one compressed bitstream."""
    ts = UID(source.transfer_syntax)
    with source.path.open("rb") as handle:
        if ts.is_encapsulated:
            handle.seek(source.value_offset)
            extended = _extended_offsets(source.header)
            return get_frame(
                handle, number - 1, number_of_frames=source.frames, extended_offsets=extended
            )
        if source.transfer_syntax in _SEEKABLE and int(source.header.BitsAllocated) >= 8:
            size = source.frame_bytes()
            handle.seek(source.value_offset + (number - 1) * size)
            return handle.read(size)
    return decoded_frame(source, number)  # 1-bit or big-endian native data


def decoded_frame(source: PixelSource, number: int) -> bytes:
    """Frame ``number`` decoded to native little-endian bytes (pixel-interleaved)."""
    try:
        array = pixel_array(str(source.path), index=number - 1, as_rgb=False)
    except Exception as exc:
        raise DicomwebProblem(
            406, "not_acceptable", f"cannot decode {UID(source.transfer_syntax).name}: {exc}"
        ) from None
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return bytes(np.ascontiguousarray(little).tobytes())


def _extended_offsets(header: Dataset) -> tuple[bytes, bytes] | None:
    offsets = header.get("ExtendedOffsetTable")
    lengths = header.get("ExtendedOffsetTableLengths")
    if offsets is None or lengths is None:
        return None
    return bytes(offsets), bytes(lengths)


def choose_frame_media(source: PixelSource, ranges: list[MediaRange]) -> tuple[str, bool]:
    """The part media type for frames and whether frames must be decoded; 406 if none fits."""
    stored = source.media_type
    for media in ranges:
        wanted_ts = media.params.get("transfer-syntax")
        if media.matches(stored) and wanted_ts in (None, "*", source.transfer_syntax):
            return stored, False
    if any(media.type == OCTET_STREAM for media in ranges):
        return OCTET_STREAM, True
    raise DicomwebProblem(
        406, "not_acceptable", f"frames are available as {stored} or {OCTET_STREAM}"
    )


def part_type(media: str, source: PixelSource, decoded: bool) -> str:
    """The Content-Type header of one frame part."""
    ts = "1.2.840.10008.1.2.1" if decoded or media == OCTET_STREAM else source.transfer_syntax
    return f"{media}; transfer-syntax={ts}"


def bytes_of_frame(source: PixelSource, number: int, decoded: bool) -> bytes:
    """One frame's payload as negotiated."""
    if decoded and UID(source.transfer_syntax).is_encapsulated:
        return decoded_frame(source, number)
    return stored_frame(source, number)
