"""WADO-RS: instances (as stored, or transcoded to a native syntax), metadata, bulk data."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID

from oncofed.server.dicomweb_common import DICOM, DicomwebProblem, Located, MediaRange, file_chunks
from oncofed.server.dicomweb_json import dataset_json, read_header

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
NATIVE = (EXPLICIT_LE, IMPLICIT_LE)
Producer = Callable[[], Iterator[bytes]]
META_BYTES = 4096
"""Bytes read to find a blob's transfer syntax (file meta information is a few hundred)."""
_META_ELEMENT = struct.Struct("<HH2s")
_SHORT_LENGTH, _LONG_LENGTH = struct.Struct("<H"), struct.Struct("<I")
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
"""Explicit VRs with a 2-byte reserved field and a 4-byte length."""
_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)*")


@lru_cache(maxsize=1 << 16)
def stored_syntax(path: Path) -> str:
    """The transfer syntax a blob is stored in (remembered: blobs never change)."""
    with path.open("rb") as handle:
        head = handle.read(META_BYTES)
    return syntax_in(head) or str(read_file_meta_info(path).TransferSyntaxUID)


def syntax_in(head: bytes) -> str | None:
    """The Transfer Syntax UID in the file meta information at the start of a Part-10 file;
    None where the start is not the usual one (pydicom then reads it)."""
    if head[128:132] != b"DICM":
        return None
    offset = 132
    while offset + 12 <= len(head):
        group, element, vr = _META_ELEMENT.unpack_from(head, offset)
        if group != 2:
            return None
        if vr in _LONG_VRS:  # tag, VR, 2 reserved bytes, 4-byte length
            (length,), start = _LONG_LENGTH.unpack_from(head, offset + 8), offset + 12
        else:  # tag, VR, 2-byte length
            (length,), start = _SHORT_LENGTH.unpack_from(head, offset + 6), offset + 8
        if element == 0x0010:
            text = head[start : start + length].rstrip(b"\0 ").decode("ascii", "replace")
            whole = start + length <= len(head)
            return text if whole and _SYNTAX.fullmatch(text) else None
        offset = start + length
    return None


def choose_syntax(stored: str, ranges: list[MediaRange]) -> str:
    """The transfer syntax to send an instance in; 406 when the client accepts none we offer.

    Offered: the stored syntax (``transfer-syntax=*`` or the stored UID) and the native
    little-endian syntaxes (decompressed when needed). No transfer-syntax means Explicit VR LE.
    """
    for media in ranges:
        if not media.matches(DICOM):
            continue
        wanted = media.params.get("transfer-syntax")
        if wanted is None:
            wanted = "*" if media.type == "*/*" else EXPLICIT_LE
        if wanted in ("*", stored):
            return stored
        if wanted in NATIVE:
            return wanted
    raise DicomwebProblem(
        406,
        "not_acceptable",
        f"instances are offered as {DICOM} in {stored} or {', '.join(NATIVE)}",
    )


def instance_part(path: Path, ranges: list[MediaRange]) -> tuple[str, Producer]:
    """(part content type, producer) for one instance."""
    stored = stored_syntax(path)
    target = choose_syntax(stored, ranges)
    content_type = f"{DICOM}; transfer-syntax={target}"
    if target == stored:
        return content_type, file_chunks(path)
    return content_type, lambda: iter([transcode(path, target)])


def transcode(path: Path, target: str) -> bytes:
    """The instance re-encoded in a native syntax (decompressing pixel data if needed)."""
    ds = pydicom.dcmread(path)
    if UID(str(ds.file_meta.TransferSyntaxUID)).is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def instance_url(base: str, item: Located) -> str:
    """The WADO-RS URL of one instance."""
    return f"{base}/studies/{item.study_uid}/series/{item.series_uid}/instances/{item.sop_uid}"


def metadata(path: Path, item: Located, base: str) -> dict[str, Any]:
    """One instance's header as DICOM JSON, bulk data by reference."""
    url = instance_url(base, item)
    header = read_header(path)
    body = dataset_json(header, lambda tag_path: f"{url}/bulkdata/{tag_path}")
    if item.frames:
        encapsulated = UID(str(header.file_meta.TransferSyntaxUID)).is_encapsulated
        bits = int(header.get("BitsAllocated", 8) or 8)
        vr = "OB" if encapsulated or bits <= 8 else "OW"
        body["7FE00010"] = {"vr": vr, "BulkDataURI": f"{url}/bulkdata/7FE00010"}
    return body
