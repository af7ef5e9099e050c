"""Writing the de-identified data set: pydicom's encoder with a fast path for untouched elements.

Most elements of a de-identified file are kept as they were read, still raw (undecoded) bytes in the
transfer syntax the output keeps. ``pydicom.filewriter.write_data_element`` spends tens of
microseconds on each (a buffer, charset lookups, checks that cannot fail for raw bytes); here a raw
element of defined length, or a changed one holding one ASCII string or one integer, is written
with one ``struct.pack``; items marked with :func:`freeze` are encoded once and reused; everything
else (other values, undefined lengths, values too long for a 16-bit length, data sets whose
encoding or character set changed) goes through pydicom exactly as ``dcmwrite`` would. The output
is byte-for-byte what ``Dataset.save_as(..., enforce_file_format=True)`` writes (tests/deid
compare both on the corpus).
"""

from __future__ import annotations

import struct
import zlib

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    write_data_element,
    write_dataset,
    write_file_meta_info,
)
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

UNDEFINED_LENGTH = 0xFFFFFFFF
IMPLEMENTATION_UID = "2.25.233466733400419436358187447208532404171"
IMPLEMENTATION_VERSION = "ONCOFED_DEID_1"
ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
ASCII_STRING_VRS = frozenset(
    ("AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UT")
)
"""String VRs an ASCII value is written as is for (pydicom: any character set, padded)."""
INTEGER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}
MAX_FROZEN = 256
_FROZEN: dict[int, Dataset] = {}
_ENCODED: dict[tuple[int, bool, bool, str], bytes] = {}


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    """The file meta information of a de-identified instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def meta_bytes(meta: FileMetaDataset, preamble: bytes = b"\0" * 128) -> bytes:
    """The start of a Part-10 file: preamble, ``DICM`` and ``meta`` (written by pydicom)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    fp.write(preamble + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return bytes(fp.getvalue())


def part10_head(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble and file meta of a Part-10 file that oncofed writes (de-identified output, or a
    data set received over the network): ``meta_bytes(file_meta(...))`` written directly, since
    pydicom's writer spends ~0.3 ms on the six elements (tests check both are equal)."""
    elements = b"".join(
        struct.pack("<HH2sH", 2, number, b"UI", len(value)) + value
        for number, value in (
            (0x0002, _padded(sop_class, b"\0")),
            (0x0003, _padded(sop_instance, b"\0")),
            (0x0010, _padded(transfer_syntax, b"\0")),
            (0x0012, _padded(IMPLEMENTATION_UID, b"\0")),
        )
    )
    version = _padded(IMPLEMENTATION_VERSION, b" ")
    elements = (
        struct.pack("<HH2sHI", 2, 0x0001, b"OB", 0, 2) + b"\0\1"
        + elements
        + struct.pack("<HH2sH", 2, 0x0013, b"SH", len(version)) + version
    )  # fmt: skip
    group_length = struct.pack("<HH2sHI", 2, 0x0000, b"UL", 4, len(elements))
    return b"\0" * 128 + b"DICM" + group_length + elements


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("ascii")
    return data + pad * (len(data) % 2)


def encode(ds: Dataset, meta: FileMetaDataset) -> bytes:
    """Return ``ds`` as a Part-10 file with ``meta``, in ``meta``'s transfer syntax."""
    ts = UID(meta.TransferSyntaxUID)
    bad = [tag for tag in ds._dict if tag >> 16 in (0, 2)]
    if bad:
        raise ValueError("command or file meta elements in the data set")
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = ts.is_implicit_VR, ts.is_little_endian
    fp.write(meta_bytes(meta))
    if "PixelData" in ds:  # as dcmwrite: encapsulated pixel data has undefined length
        ds["PixelData"].is_undefined_length = ts.is_compressed
    if ts == DeflatedExplicitVRLittleEndian:
        body = DicomBytesIO()
        body.is_implicit_VR, body.is_little_endian = False, True
        _write_dataset(body, ds)
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        deflated = compressor.compress(body.getvalue()) + compressor.flush()
        fp.write(deflated + b"\0" * (len(deflated) % 2))
    else:
        _write_dataset(fp, ds)
    return bytes(fp.getvalue())


def freeze(item: Dataset) -> Dataset:
    """Mark ``item`` as never changed again: its encoding is made once per transfer syntax and
    character set, then reused (e.g. the De-identification Method Code Sequence items)."""
    if len(_FROZEN) >= MAX_FROZEN:
        _FROZEN.clear()
        _ENCODED.clear()
    _FROZEN[id(item)] = item  # held, so its id is never reused while it is listed
    return item


def _write_dataset(fp: DicomBytesIO, ds: Dataset, parent: str | list[str] = "iso8859") -> None:
    """``pydicom.filewriter.write_dataset`` with raw elements, simple values and sequences
    written here."""
    implicit, little = fp.is_implicit_VR, fp.is_little_endian
    if id(ds) in _FROZEN:
        key = (id(ds), implicit, little, repr(parent))
        encoded = _ENCODED.get(key)
        if encoded is None:
            buffer = DicomBytesIO()
            buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
            write_dataset(buffer, ds, parent)
            encoded = _ENCODED[key] = bytes(buffer.getvalue())
        fp.write(encoded)
        return
    if (implicit, little) != ds.original_encoding or (
        ds.original_character_set != ds._character_set
    ):
        write_dataset(fp, ds, parent)  # re-encoding needed: pydicom does all of it
        return
    encodings: str | list[str] = ds.get("SpecificCharacterSet", parent)
    order = "<" if little else ">"
    short_header = struct.Struct(order + ("HHI" if implicit else "HH2sH"))
    long_header = struct.Struct(order + ("HHI" if implicit else "HH2sHI"))
    items = ds._dict
    for tag in sorted(items):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = items[tag]
        if isinstance(elem, RawDataElement):
            value = elem.value or b""
            length = len(value)
            if elem.length == UNDEFINED_LENGTH or length > 0xFFFF:
                write_data_element(fp, elem, encodings)
            elif implicit:
                fp.write(short_header.pack(tag >> 16, tag & 0xFFFF, length) + value)
            elif elem.VR in LONG_VRS:
                vr = str(elem.VR).encode()
                fp.write(long_header.pack(tag >> 16, tag & 0xFFFF, vr, 0, length) + value)
            else:
                vr = str(elem.VR).encode()
                fp.write(short_header.pack(tag >> 16, tag & 0xFFFF, vr, length) + value)
        elif elem.VR == "SQ":
            _write_sequence(fp, elem, encodings, long_header)
        else:
            simple = _simple_value(elem, order)
            if simple is None:
                write_data_element(fp, elem, encodings)
            elif implicit:
                fp.write(short_header.pack(tag >> 16, tag & 0xFFFF, len(simple)) + simple)
            elif elem.VR in LONG_VRS:
                vr = str(elem.VR).encode()
                fp.write(long_header.pack(tag >> 16, tag & 0xFFFF, vr, 0, len(simple)) + simple)
            else:
                vr = str(elem.VR).encode()
                fp.write(short_header.pack(tag >> 16, tag & 0xFFFF, vr, len(simple)) + simple)


def _simple_value(elem: DataElement, order: str) -> bytes | None:
    """The encoded value of an element as pydicom writes it, for the common simple cases only
    (one ASCII string or one integer); None for everything else."""
    value = elem.value
    vr = elem.VR
    if elem.is_undefined_length:
        return None
    if isinstance(value, str) and vr in ASCII_STRING_VRS and value.isascii():
        if len(value) % 2:
            value += "\0" if vr == "UI" else " "
        return value.encode("ascii") if len(value) <= 0xFFFF else None
    if type(value) is int and vr in INTEGER_FORMATS:
        return struct.pack(order + INTEGER_FORMATS[vr], value)
    return None


def _write_sequence(
    fp: DicomBytesIO, elem: DataElement, encodings: str | list[str], header: struct.Struct
) -> None:
    """Write a sequence as pydicom does (item lengths filled in unless undefined)."""
    tag = int(elem.tag)
    order = "<" if fp.is_little_endian else ">"
    marker = struct.Struct(order + "HHI")
    undefined = elem.is_undefined_length
    if fp.is_implicit_VR:
        fp.write(header.pack(tag >> 16, tag & 0xFFFF, 0))
    else:
        fp.write(header.pack(tag >> 16, tag & 0xFFFF, b"SQ", 0, 0))
    body_start = fp.tell()
    for item in elem.value or ():
        fp.write(marker.pack(ITEM >> 16, ITEM & 0xFFFF, UNDEFINED_LENGTH))
        item_start = fp.tell()
        _write_dataset(fp, item, encodings)
        if getattr(item, "is_undefined_length_sequence_item", False):
            fp.write(marker.pack(ITEM_DELIMITER >> 16, ITEM_DELIMITER & 0xFFFF, 0))
        else:
            end = fp.tell()
            fp.seek(item_start - 4)
            fp.write(struct.pack(order + "I", end - item_start))
            fp.seek(end)
    end = fp.tell()
    fp.seek(body_start - 4)
    fp.write(struct.pack(order + "I", UNDEFINED_LENGTH if undefined else end - body_start))
    fp.seek(end)
    if undefined:
        fp.write(marker.pack(SEQUENCE_DELIMITER >> 16, SEQUENCE_DELIMITER & 0xFFFF, 0))
