"""Structural completeness check of a DICOM byte stream.

pydicom stops quietly at end of file, so a file cut in the middle of its pixel data (or of its
header) parses without complaint. This walker reads only element headers, skipping values, and
fails when any element, item or sequence runs past the end of the data. It is written here
because no library exposes such a check; it costs microseconds per file.
"""

from __future__ import annotations

import struct

from oncofed.errors import IngestError

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)  # PS3.5 Table 7.1-1: a reserved field and a 4-byte length
_SHORT_VRS = "AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US"
_ALL_VRS = _LONG_VRS | frozenset(vr.encode() for vr in _SHORT_VRS.split(" "))
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_ITEM_END = (0xFFFE, 0xE00D)
_SEQUENCE_END = (0xFFFE, 0xE0DD)


class TruncatedError(IngestError):
    """The data ends inside an element."""

    code = "truncated"


def dataset_start(raw: bytes) -> int:
    """Offset of the first element: after the 128-byte preamble and ``DICM``, if present."""
    return 132 if raw[128:132] == b"DICM" else 0


PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def check_complete(
    raw: bytes, *, implicit_vr: bool, little_endian: bool, start: int | None = None
) -> set[int]:
    """Raise TruncatedError unless every element of ``raw`` (from ``start``, an element
    boundary, when given) lies fully inside it.

    File meta elements (group 0002) are always explicit VR little endian; the rest of the data
    set uses the encoding given. Returns the top-level tags seen (as ``group << 16 | element``).
    """
    pos = dataset_start(raw) if start is None else start
    meta = _Walker(raw, implicit_vr=False, little_endian=True)
    while start is None and pos + 4 <= len(raw) and meta.group_at(pos) == 0x0002:
        pos = meta.element(pos, len(raw))
    if not implicit_vr and pos + 6 <= len(raw) and raw[pos + 4 : pos + 6] not in _ALL_VRS:
        implicit_vr = True  # says explicit, is implicit: read it as pydicom does
    body = _Walker(raw, implicit_vr=implicit_vr, little_endian=little_endian)
    body.dataset(pos, len(raw))
    return body.top_level_tags


class _Walker:
    def __init__(self, raw: bytes, *, implicit_vr: bool, little_endian: bool) -> None:
        self.raw = raw
        self.implicit = implicit_vr
        self.order = "<" if little_endian else ">"
        self.top_level_tags: set[int] = set()
        self._depth = 0

    def group_at(self, pos: int) -> int:
        return int(struct.unpack_from("<H", self.raw, pos)[0])

    def _u32(self, pos: int) -> int:
        return int(struct.unpack_from(self.order + "I", self.raw, pos)[0])

    def _need(self, pos: int, size: int, end: int, what: str) -> None:
        if pos + size > end:
            raise TruncatedError(
                f"data ends inside {what} at byte {pos} (needs {size} bytes, {end - pos} left)"
            )

    def _tag(self, pos: int, end: int) -> tuple[int, int]:
        self._need(pos, 4, end, "an element tag")
        group, element = struct.unpack_from(self.order + "HH", self.raw, pos)
        return int(group), int(element)

    def dataset(self, pos: int, end: int, *, until_item_end: bool = False) -> int:
        """Walk elements from ``pos``; return the offset after the last one (or the delimiter)."""
        while pos < end:
            tag = self._tag(pos, end)
            if tag == _ITEM_END:
                self._need(pos, 8, end, "an item delimiter")
                return pos + 8
            pos = self.element(pos, end)
        if until_item_end:
            raise TruncatedError(f"data ends at byte {end} before an item delimiter")
        return pos

    def element(self, pos: int, end: int) -> int:
        """Skip one element starting at ``pos``; return the offset after it."""
        group, elem = self._tag(pos, end)
        if self._depth == 0:
            self.top_level_tags.add(group << 16 | elem)
        if self.implicit or group == 0xFFFE:
            self._need(pos, 8, end, f"the header of ({group:04X},{elem:04X})")
            length = self._u32(pos + 4)
            vr, start = (b"SQ" if length == _UNDEFINED else b"??"), pos + 8
        else:
            self._need(pos, 8, end, f"the header of ({group:04X},{elem:04X})")
            vr = self.raw[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                self._need(pos, 12, end, f"the header of ({group:04X},{elem:04X})")
                length = self._u32(pos + 8)
                start = pos + 12
            else:
                length = int(struct.unpack_from(self.order + "H", self.raw, pos + 6)[0])
                start = pos + 8
        if length == _UNDEFINED:
            return self._undefined_length_value(start, end, (group, elem), vr)
        self._need(start, length, end, f"the value of ({group:04X},{elem:04X})")
        return start + length

    def _undefined_length_value(self, pos: int, end: int, tag: tuple[int, int], vr: bytes) -> int:
        """Walk items of a sequence or encapsulated pixel data up to the sequence delimiter."""
        nested = self if vr != b"UN" else _Walker(self.raw, implicit_vr=True, little_endian=True)
        is_pixel_fragments = tag == (0x7FE0, 0x0010) or vr in (b"OB", b"OW")
        while True:
            item_tag = self._tag(pos, end)
            self._need(pos, 8, end, f"an item of ({tag[0]:04X},{tag[1]:04X})")
            length = self._u32(pos + 4)
            pos += 8
            if item_tag == _SEQUENCE_END:
                return pos
            if item_tag != _ITEM:
                raise TruncatedError(
                    f"expected an item in ({tag[0]:04X},{tag[1]:04X}) at byte {pos - 8}, "
                    f"found ({item_tag[0]:04X},{item_tag[1]:04X})"
                )
            if length == _UNDEFINED and not is_pixel_fragments:
                nested._depth += 1
                pos = nested.dataset(pos, end, until_item_end=True)
                nested._depth -= 1
            else:
                self._need(pos, length, end, f"an item of ({tag[0]:04X},{tag[1]:04X})")
                pos += length
