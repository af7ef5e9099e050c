"""DICOM JSON (PS3.18 F.2) of stored headers, with large binary values as BulkDataURIs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from oncofed.server.dicomweb_common import DicomwebProblem

BULK_THRESHOLD = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA = 0x7FE00010
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
UriOf = Callable[[str], str]


def read_header(path: Path, tags: Sequence[int] | None = None) -> Dataset:
    """A stored instance's header (no pixel data); large values stay on disk until asked for."""
    return pydicom.dcmread(
        path,
        defer_size=BULK_THRESHOLD,
        stop_before_pixels=True,
        specific_tags=list(tags) if tags else None,
    )


def _vr(raw: RawDataElement | DataElement) -> str:
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            vr = "UN"
    return str(vr).split(" or ")[0]


def _length(raw: RawDataElement | DataElement) -> int:
    if isinstance(raw, RawDataElement):
        return int(raw.length)
    value = raw.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def dataset_json(ds: Dataset, bulk_uri: UriOf | None, prefix: str = "") -> dict[str, Any]:
    """``ds`` as DICOM JSON; large binary values become ``BulkDataURI`` (or are left out)."""
    out: dict[str, Any] = {}
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if raw is None:
            continue
        key = f"{int(tag):08X}"
        vr = _vr(raw)
        is_bulk = int(tag) == PIXEL_DATA or (vr in BULK_VRS and _length(raw) > BULK_THRESHOLD)
        if is_bulk:
            if bulk_uri is not None:
                out[key] = {"vr": vr, "BulkDataURI": bulk_uri(prefix + key)}
            continue
        element = ds[tag]
        if element.VR == "SQ":
            items = [
                dataset_json(item, bulk_uri, f"{prefix}{key}/{n}/")
                for n, item in enumerate(element.value)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        try:
            out[key] = element.to_json_dict(None, BULK_THRESHOLD)
        except Exception:  # an unencodable value: keep the attribute, drop the value
            out[key] = {"vr": element.VR}
    return out


def bulk_element(ds: Dataset, path: str) -> DataElement:
    """The element at a bulk data path ``TAG[/ITEM/TAG...]``; 404 when there is none."""
    parts = path.strip("/").split("/")
    if len(parts) % 2 != 1:
        raise DicomwebProblem(400, "invalid_bulkdata_path", f"not a bulk data path: {path!r}")
    current = ds
    for n, part in enumerate(parts):
        if n % 2 == 1:
            continue
        if not _TAG.match(part):
            raise DicomwebProblem(400, "invalid_bulkdata_path", f"not a tag: {part!r}")
        tag = int(part, 16)
        if tag not in current:
            raise DicomwebProblem(404, "not_found", f"no element {part} in this instance")
        element = current[tag]
        if n == len(parts) - 1:
            return element
        index = parts[n + 1]
        if element.VR != "SQ" or not index.isdigit() or int(index) >= len(element.value):
            raise DicomwebProblem(404, "not_found", f"no item {index} in {part}")
        current = element.value[int(index)]
    raise DicomwebProblem(404, "not_found", f"no bulk data at {path!r}")
