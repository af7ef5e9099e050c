"""Header-only parsing of one DICOM byte stream into an InstanceRecord."""

from __future__ import annotations

import io
import re
from datetime import date

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from oncofed.catalog.records import InstanceRecord
from oncofed.errors import IngestError
from oncofed.ingest.integrity import PIXEL_DATA_TAGS, TruncatedError, check_complete

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
_REQUIRED_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def read_header(raw: bytes) -> tuple[Dataset, int]:
    """Parse everything before the pixel data; accept Part-10 files and bare data sets.

    Returns the header and the offset where it ended (the pixel data's tag, or the end).
    """
    stream = io.BytesIO(raw)
    try:
        return pydicom.dcmread(stream, stop_before_pixels=True), stream.tell()
    except InvalidDicomError:
        pass
    except Exception as exc:
        raise IngestError(f"unreadable DICOM header: {exc}") from exc
    if len(raw) < 8 or raw[:4] == b"\x00" * 4:
        raise IngestError("not DICOM (no 'DICM' marker and no data set at the start)")
    stream = io.BytesIO(raw)
    try:
        dataset = pydicom.dcmread(stream, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise IngestError(f"not DICOM: {exc}") from exc
    if not any(getattr(dataset, name, None) for name in _REQUIRED_UIDS):
        raise IngestError("not DICOM (no 'DICM' marker and no instance UIDs)")
    return dataset, stream.tell()


def parse_instance(raw: bytes, sha256: str) -> InstanceRecord:
    """Validate ``raw`` and extract the catalog fields; raise IngestError naming the problem."""
    dataset, header_end = read_header(raw)
    meta = getattr(dataset, "file_meta", None)
    sop_class = _check_uids(dataset)
    transfer_syntax = meta and _text(meta, "TransferSyntaxUID")
    if transfer_syntax != DeflatedExplicitVRLittleEndian:  # deflated: pydicom inflates it whole
        implicit, little = _encoding(dataset)
        # pydicom stops quietly at the end of the data: a header it read up to the pixel data
        # is whole, so only what follows needs walking; without pixel data, walk everything.
        start = header_end if header_end < len(raw) else None
        tags = check_complete(raw, implicit_vr=implicit, little_endian=little, start=start)
        if _is_image(dataset, sop_class) and not tags & PIXEL_DATA_TAGS:
            raise TruncatedError("an image without pixel data (file cut short?)")
    return _record(dataset, sop_class, sha256, len(raw))


def record_of(dataset: Dataset, sha256: str, size: int) -> InstanceRecord:
    """The catalog fields of a whole data set already in memory, the one encoded in the
    ``size`` bytes hashing to ``sha256`` (a de-identified instance: no need to parse its bytes
    again); the same checks as :func:`parse_instance` but the byte-level completeness walk."""
    sop_class = _check_uids(dataset)
    if _is_image(dataset, sop_class) and not PIXEL_DATA_TAGS & set(dataset.keys()):
        raise TruncatedError("an image without pixel data (file cut short?)")
    return _record(dataset, sop_class, sha256, size)


def _check_uids(dataset: Dataset) -> str | None:
    """The SOP Class UID; IngestError for a DICOMDIR or a missing or malformed instance UID."""
    meta = getattr(dataset, "file_meta", None)
    sop_class = _text(dataset, "SOPClassUID") or (meta and _text(meta, "MediaStorageSOPClassUID"))
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise IngestError("a DICOMDIR index, not an image; its referenced files are ingested")
    for name in _REQUIRED_UIDS:
        value = _text(dataset, name)
        if not value:
            raise IngestError(f"missing required attribute {name}")
        if len(value) > 64 or not _UID.match(value):
            raise IngestError(f"{name} is not a valid UID: {value!r}")
    return sop_class


def _is_image(dataset: Dataset, sop_class: str | None) -> bool:
    return "Rows" in dataset or "Image Storage" in UID(sop_class or "").name


def _record(dataset: Dataset, sop_class: str | None, sha256: str, size: int) -> InstanceRecord:
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = meta and _text(meta, "TransferSyntaxUID")
    study_uid = str(dataset.StudyInstanceUID)
    return InstanceRecord(
        patient_id=_text(dataset, "PatientID") or f"no-patient-id:{study_uid}",
        patient_sex=_sex(dataset),
        age_years=_age_years(dataset),
        study_uid=study_uid,
        study_date=_date(_text(dataset, "StudyDate")),
        study_description=_text(dataset, "StudyDescription"),
        series_uid=str(dataset.SeriesInstanceUID),
        modality=(_text(dataset, "Modality") or "").upper() or None,
        body_part=(_text(dataset, "BodyPartExamined") or "").upper() or None,
        manufacturer=_text(dataset, "Manufacturer"),
        model=_text(dataset, "ManufacturerModelName"),
        series_description=_text(dataset, "SeriesDescription"),
        sop_uid=str(dataset.SOPInstanceUID),
        sop_class=sop_class or None,
        transfer_syntax=transfer_syntax or None,
        sha256=sha256,
        size=size,
        frames=_int(dataset, "NumberOfFrames") or (1 if "Rows" in dataset else None),
        rows=_int(dataset, "Rows"),
        cols=_int(dataset, "Columns"),
        birth_year=_birth_year(dataset),
    )


def _encoding(dataset: Dataset) -> tuple[bool, bool]:
    """The encoding pydicom found while reading (it corrects files lying about their syntax)."""
    implicit, little = dataset.original_encoding
    if implicit is not None and little is not None:
        return bool(implicit), bool(little)
    meta = getattr(dataset, "file_meta", None)
    syntax = UID(_text(meta, "TransferSyntaxUID") or "") if meta else UID("")
    if syntax.is_transfer_syntax:
        return syntax.is_implicit_VR, syntax.is_little_endian
    return True, True


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip().rstrip("\x00") or None


def _int(dataset: Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _sex(dataset: Dataset) -> str | None:
    value = (_text(dataset, "PatientSex") or "").upper()
    return value if value in ("M", "F", "O") else None


def _date(text: str | None) -> date | None:
    if not text or len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _birth_year(dataset: Dataset) -> int | None:
    born = _date(_text(dataset, "PatientBirthDate"))
    return born.year if born else None


def _age_years(dataset: Dataset) -> float | None:
    """Completed years at the study: PatientAge (nnnD/W/M/Y) if valid, else from the dates."""
    match = _AGE.match(_text(dataset, "PatientAge") or "")
    if match:
        return float(int(int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] + 1e-9))
    born = _date(_text(dataset, "PatientBirthDate"))
    seen = _date(_text(dataset, "StudyDate"))
    if born and seen and seen >= born:
        before_birthday = (seen.month, seen.day) < (born.month, born.day)
        return float(seen.year - born.year - before_birthday)
    return None
