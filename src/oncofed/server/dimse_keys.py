"""C-FIND/C-GET/C-MOVE keys: which the catalog answers, and matching values in SQL or Python.

Keys the catalog holds are matched in SQL with bound parameters. Any other key is read from a
stored (de-identified) header of each match, and matched there (PS3.4 C.2.2.2: single value,
wildcards ``*``/``?``, UID lists, ranges for dates and times, universal matching).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue


class Level(IntEnum):
    """Query/retrieve levels, outermost first."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class DimseFailure(Exception):
    """A request the SCP answers with a failure ``status`` and an ErrorComment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status, self.comment = status, comment


IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000


@dataclass(frozen=True)
class Key:
    """A catalog-backed key. ``kind``: uid, date, text, name (case-insensitive), code, int,
    modalities (matched over a study's series) or count (returned, never matched)."""

    keyword: str
    level: Level
    sql: str
    kind: str


KEYS: dict[str, Key] = {
    k.keyword: k
    for k in (
        Key("PatientID", Level.PATIENT, "p.pseudo_id", "text"),
        Key("PatientName", Level.PATIENT, "p.pseudo_id", "name"),
        Key("PatientSex", Level.PATIENT, "p.sex", "code"),
        Key(
            "NumberOfPatientRelatedStudies", Level.PATIENT, "count(DISTINCT st.study_key)", "count"
        ),
        Key("NumberOfPatientRelatedSeries", Level.PATIENT, "count(DISTINCT s.series_key)", "count"),
        Key("NumberOfPatientRelatedInstances", Level.PATIENT, "count(*)", "count"),
        Key("StudyInstanceUID", Level.STUDY, "st.study_uid", "uid"),
        Key("StudyDate", Level.STUDY, "st.study_date", "date"),
        Key("StudyDescription", Level.STUDY, "st.description", "text"),
        Key("ModalitiesInStudy", Level.STUDY, "list(DISTINCT s.modality)", "modalities"),
        Key("NumberOfStudyRelatedSeries", Level.STUDY, "count(DISTINCT s.series_key)", "count"),
        Key("NumberOfStudyRelatedInstances", Level.STUDY, "count(*)", "count"),
        Key("SeriesInstanceUID", Level.SERIES, "s.series_uid", "uid"),
        Key("Modality", Level.SERIES, "s.modality", "code"),
        Key("SeriesDescription", Level.SERIES, "s.description", "text"),
        Key("BodyPartExamined", Level.SERIES, "s.body_part", "code"),
        Key("Manufacturer", Level.SERIES, "s.manufacturer", "text"),
        Key("ManufacturerModelName", Level.SERIES, "s.model", "text"),
        Key("NumberOfSeriesRelatedInstances", Level.SERIES, "count(*)", "count"),
        Key("SOPInstanceUID", Level.IMAGE, "i.sop_uid", "uid"),
        Key("SOPClassUID", Level.IMAGE, "i.sop_class", "uid"),
        Key("Rows", Level.IMAGE, "i.rows", "int"),
        Key("Columns", Level.IMAGE, "i.cols", "int"),
        Key("NumberOfFrames", Level.IMAGE, "i.frames", "int"),
    )
}

UNIQUE_KEYS: dict[Level, str] = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}

_DATE = re.compile(r"^\d{8}$")


def match_text(element: DataElement) -> str:
    """An identifier element's matching value as sent (multiple values joined with ``\\``)."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def is_universal(text: str) -> bool:
    """Whether ``text`` matches everything (empty, or only ``*``)."""
    return text.strip("*") == ""


def sql_condition(key: Key, text: str, column: str | None = None) -> tuple[str, list[Any]]:
    """SQL matching ``key`` (on ``column`` if given) against ``text``, with bound parameters."""
    column = column or key.sql
    if key.kind == "date":
        return _date_condition(column, key.keyword, text)
    if key.kind == "uid":
        uids = [uid.strip() for uid in text.split("\\") if uid.strip()]
        return f"{column} IN ({', '.join('?' * len(uids))})", list(uids)
    if key.kind == "int":
        try:
            return f"{column} = ?", [int(text)]
        except ValueError:
            raise DimseFailure(UNABLE_TO_PROCESS, f"{key.keyword}: not an integer") from None
    parts, params = [], []
    for item in text.split("\\"):
        sql, param = _text_condition(column, item.strip(), fold=key.kind == "name")
        parts.append(sql)
        params.append(param)
    return "(" + " OR ".join(parts) + ")", params


def _text_condition(column: str, value: str, *, fold: bool) -> tuple[str, str]:
    if fold:
        column, value = f"lower({column})", value.lower()
    if "*" not in value and "?" not in value:
        return f"{column} = ?", value
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{column} LIKE ? ESCAPE '\\'", escaped.replace("*", "%").replace("?", "_")


def _date_condition(column: str, keyword: str, text: str) -> tuple[str, list[Any]]:
    low, dash, high = text.partition("-")
    if not dash:
        return f"{column} = ?", [_parse_date(low, keyword)]
    parts, params = [], []
    if low:
        parts.append(f"{column} >= ?")
        params.append(_parse_date(low, keyword))
    if high:
        parts.append(f"{column} <= ?")
        params.append(_parse_date(high, keyword))
    if not parts:
        raise DimseFailure(UNABLE_TO_PROCESS, f"{keyword}: empty date range")
    return " AND ".join(parts), params


def _parse_date(text: str, keyword: str) -> date:
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise DimseFailure(UNABLE_TO_PROCESS, f"{keyword}: not a date YYYYMMDD") from None


def header_matches(element: DataElement | None, vr: str, text: str) -> bool:
    """Whether a stored header element matches ``text`` (a key the catalog does not hold)."""
    if element is None or element.value in (None, ""):
        return False
    values = match_text(element).split("\\")
    patterns = [p.strip() for p in text.split("\\")]
    return any(_value_matches(v.strip(), p, vr) for v in values for p in patterns)


def _value_matches(value: str, pattern: str, vr: str) -> bool:
    if vr in ("DA", "TM", "DT") and "-" in pattern:
        low, _, high = pattern.partition("-")
        return (not low or value >= low) and (not high or value[: len(high)] <= high)
    if vr == "UI":
        return value == pattern
    if vr == "PN":
        value, pattern = value.lower(), pattern.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None
