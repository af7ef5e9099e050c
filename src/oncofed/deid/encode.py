"""Writing the de-identified data set: pydicom's encoder with a fast path for untouched elements.

Most elements of a de-identified file are kept as they were read, still raw (undecoded) bytes in the
transfer syntax the output keeps. ``pydicom.filewriter.write_data_element`` spends tens of
microseconds on each (a buffer, charset lookups, checks that cannot fail for raw bytes); here a raw
element of defined length is written with one ``struct.pack``, and everything else (changed values,
undefined lengths, values too long for a 16-bit length, data sets whose encoding or character set
changed) goes through pydicom exactly as ``dcmwrite`` would. The output is byte-for-byte what
``Dataset.save_as(..., enforce_file_format=True)`` writes (tests/deid compare both on the corpus).
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
ITEM, ITEM_DELIMITER, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)


def encode(ds: Dataset, meta: FileMetaDataset, preamble: bytes = b"\0" * 128) -> bytes:
    """Return ``ds`` as a Part-10 file with ``meta``, in ``meta``'s transfer syntax."""
    ts = UID(meta.TransferSyntaxUID)
    bad = [tag for tag in ds._dict if tag >> 16 in (0, 2)]
    if bad:
        raise ValueError("command or file meta elements in the data set")
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = ts.is_implicit_VR, ts.is_little_endian
    fp.write(preamble + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
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


def _write_dataset(fp: DicomBytesIO, ds: Dataset, parent: str | list[str] = "iso8859") -> None:
    """``pydicom.filewriter.write_dataset`` with raw elements and sequences written here."""
    implicit, little = fp.is_implicit_VR, fp.is_little_endian
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
            write_data_element(fp, elem, encodings)


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
