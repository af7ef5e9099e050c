"""Little-endian DICOM elements read straight from bytes, and values coded as pydicom codes them.

The byte-level de-identification (:mod:`oncofed.deid.stream`) reads a data set into a tree of
:class:`Element` (values sliced, sequences parsed), decodes the values it must look at and writes
its output with :func:`element_bytes`, always as the pydicom path would. Anything outside the common
case raises :class:`Declined`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
NUMBER_FORMATS = {
    "US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q",
    "AT": "HH",
}  # fmt: skip
BULK_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW"))
MULTI_TEXT = frozenset(("SH", "LO", "UC"))
"""Text VRs whose values pydicom splits at backslashes, stripping each (ST, LT, UT: one value)."""
SINGLE_TEXT = frozenset(("ST", "LT", "UT"))
STRINGS = frozenset(("AS", "CS", "DA", "DT", "TM", "IS", "DS"))
"""VRs pydicom reads with ``multi_string``: trailing padding stripped, then split."""
LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)
ALL_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_TAG = struct.Struct("<HH")
U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
ITEM_HEADER = struct.Struct("<HHI")
_IMPLICIT, _SHORT, _LONG = ITEM_HEADER, struct.Struct("<HH2sH"), struct.Struct("<HH2sHI")


Value = bytes | memoryview
"""An element's value: large ones (pixel data) are views of the input, not copies."""
VIEW_BYTES = 1 << 16


class Declined(Exception):
    """The input is outside this walk's common case; the pydicom path takes it."""


@dataclass
class Element:
    """One element as read: where its value lies, or its items when it is a sequence."""

    tag: int
    vr: str | None  # as stated; None in Implicit VR
    value: Value
    undefined: bool = False
    items: list[tuple[list[Element], bool]] | None = None  # (elements, undefined length)


@dataclass(frozen=True)
class Out:
    """An element of the output: its VR (as the pydicom path writes it) and value bytes."""

    tag: int
    vr: str
    value: Value
    undefined: bool = False


class Reader:
    """Elements of a little-endian data set, read into a tree (sequences parsed, values sliced)."""

    def __init__(self, raw: bytes, implicit: bool) -> None:
        self.raw = raw
        self.view = memoryview(raw)
        self.implicit = implicit

    def value(self, pos: int, length: int) -> Value:
        """The bytes at ``pos``: a copy when small, a view of the input when large."""
        if length < VIEW_BYTES:
            return self.raw[pos : pos + length]
        return self.view[pos : pos + length]

    def dataset(self, pos: int, end: int, *, item: bool = False) -> tuple[list[Element], int]:
        elements: list[Element] = []
        raw = self.raw
        while pos < end:
            group, number = _TAG.unpack_from(raw, pos)
            tag = group << 16 | number
            if tag == ITEM_END and item:
                return elements, pos + 8
            if group == 0xFFFE or (elements and tag <= elements[-1].tag):
                raise Declined("delimiter out of place, or elements out of order")
            if self.implicit:
                (length,), vr, pos = _U32.unpack_from(raw, pos + 4), None, pos + 8
                sequence = dictionary_vr(tag) == "SQ"
            else:
                vr = raw[pos + 4 : pos + 6].decode("latin-1")
                if vr.encode("latin-1") not in ALL_VRS or vr == "UN":
                    raise Declined(f"VR {vr!r}")
                if vr.encode() in LONG_VRS:
                    (length,), pos = _U32.unpack_from(raw, pos + 8), pos + 12
                else:
                    (length,), pos = U16.unpack_from(raw, pos + 6), pos + 8
                sequence = vr == "SQ"
            if sequence:
                element, pos = self._sequence(tag, vr, pos, length, end)
            elif length == UNDEFINED:
                element, pos = self._fragments(tag, vr, pos, end)
            else:
                if pos + length > end:
                    raise Declined("truncated")
                element, pos = Element(tag, vr, self.value(pos, length)), pos + length
            elements.append(element)
        if item or pos != end:
            raise Declined("data ends inside an item")
        return elements, pos

    def _sequence(
        self, tag: int, vr: str | None, pos: int, length: int, end: int
    ) -> tuple[Element, int]:
        undefined = length == UNDEFINED
        stop = end if undefined else pos + length
        if stop > end:
            raise Declined("truncated")
        items: list[tuple[list[Element], bool]] = []
        while True:
            if not undefined and pos == stop:
                break
            group, number = _TAG.unpack_from(self.raw, pos)
            (size,) = _U32.unpack_from(self.raw, pos + 4)
            pos += 8
            marker = group << 16 | number
            if marker == SEQUENCE_END and undefined:
                break
            if marker != ITEM:
                raise Declined("not an item")
            if size == UNDEFINED:
                elements, pos = self.dataset(pos, stop, item=True)
            else:
                elements, pos = self.dataset(pos, pos + size)
            items.append((elements, size == UNDEFINED))
        if pos > stop:
            raise Declined("truncated")
        return Element(tag, vr, b"", undefined, items), pos

    def _fragments(self, tag: int, vr: str | None, pos: int, end: int) -> tuple[Element, int]:
        """Encapsulated pixel data: items up to the sequence delimiter, kept as bytes."""
        if tag != PIXEL_DATA or vr not in ("OB", "OW"):
            raise Declined("undefined length outside a sequence or pixel data")
        start = pos
        while True:
            group, number = _TAG.unpack_from(self.raw, pos)
            (size,) = _U32.unpack_from(self.raw, pos + 4)
            marker = group << 16 | number
            if marker == SEQUENCE_END:
                return Element(tag, vr, self.value(start, pos - start), True), pos + 8
            if marker != ITEM or size == UNDEFINED or pos + 8 + size > end:
                raise Declined("bad fragment")
            pos += 8 + size


def dictionary_vr(tag: int) -> str | None:
    entry = DicomDictionary.get(tag)
    return str(entry[0]) if entry else None


def ascii_text(value: Value) -> str:
    value = bytes(value)
    if not value.isascii() or b"\x1b" in value:
        raise Declined("not plain ASCII")
    return value.decode("ascii")


def decoded(vr: str, value: Value) -> list[str] | None:
    """An element's value as the pydicom path's ``_texts`` sees it (None: not text)."""
    if vr in NUMBER_FORMATS:
        if len(value) % struct.calcsize("<" + NUMBER_FORMATS[vr]):
            raise Declined("odd number length")
        return None
    if vr in BULK_VRS:
        return None
    if vr == "AE":
        values = [v.strip() for v in ascii_text(value).split("\\")]
    elif vr in MULTI_TEXT:
        values = [v.rstrip("\0 ") for v in ascii_text(value).split("\\")]
    elif vr in SINGLE_TEXT:
        values = [ascii_text(value).rstrip("\0 ")]
    elif vr in ("UI", "PN") or vr in STRINGS:
        values = ascii_text(value).rstrip("\0 ").split("\\")
    else:
        raise Declined(f"values of VR {vr}")
    if len(values) > 1:
        return [v for v in values if v]
    return values if values[0] else []


def encoded(vr: str, value: Any) -> bytes:
    """``value`` (a Walker result) as pydicom writes it for ``vr``."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if vr in NUMBER_FORMATS:
        if vr == "AT":
            return _TAG.pack(value >> 16, value & 0xFFFF)
        return struct.pack("<" + NUMBER_FORMATS[vr], value)
    text = "\\".join(value) if isinstance(value, list) else str(value)
    if not text.isascii() or "\x1b" in text:
        raise Declined("not plain ASCII")
    encoded = text.encode("ascii")
    return encoded + (b"\0" if vr == "UI" else b" ") * (len(encoded) % 2)


def element_bytes(element: Out, implicit: bool) -> tuple[Value, ...]:
    """An output element as the pydicom path writes it: header, value, delimiter if any (to be
    joined: a large value is not copied here)."""
    tag, vr, value = element.tag, element.vr, element.value
    length = UNDEFINED if element.undefined else len(value)
    if implicit:
        head = _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, length)
    elif vr.encode() in LONG_VRS or element.undefined:
        head = _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    elif length <= 0xFFFF:
        head = _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)
    else:
        raise Declined("value too long for its VR")
    if element.undefined:
        return head, value, ITEM_HEADER.pack(0xFFFE, 0xE0DD, 0)
    return head, value


def read_file_meta(raw: bytes) -> tuple[FileMetaDataset, int]:
    """The file meta information of a Part-10 file (raw elements), and where the data set
    starts."""
    if raw[128:132] != b"DICM":
        raise Declined("no Part-10 preamble")
    pos = 132
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    while pos + 8 <= len(raw) and U16.unpack_from(raw, pos)[0] == 2:
        (number,) = U16.unpack_from(raw, pos + 2)
        vr = raw[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            (length,), start = _U32.unpack_from(raw, pos + 8), pos + 12
        else:
            (length,), start = U16.unpack_from(raw, pos + 6), pos + 8
        tag = BaseTag(0x00020000 | number)
        value = raw[start : start + length]
        elements[tag] = RawDataElement(tag, vr.decode("latin-1"), length, value, 0, False, True)
        pos = start + length
    return FileMetaDataset(elements), pos
