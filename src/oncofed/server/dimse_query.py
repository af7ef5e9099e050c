"""C-FIND answers and C-GET/C-MOVE matches from the catalog, with parameterised SQL only.

Only instances stored at the node are found (reference metadata without blobs is not), and
every value returned is de-identified: the catalog's, or a stored blob's header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from oncofed.server.dimse_keys import (
    IDENTIFIER_MISMATCH,
    KEYS,
    UNIQUE_KEYS,
    DimseFailure,
    Key,
    Level,
    header_matches,
    is_universal,
    match_text,
    sql_condition,
)

PATIENT_ROOT = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
STUDY_ROOT = (Level.STUDY, Level.SERIES, Level.IMAGE)
_ANSWERED_BY_SCP = {0x00080005, 0x00080052, 0x00080054}  # charset, level, retrieve AE
_LEVEL_BOUND = {"count", "modalities"}  # aggregates: answered at their own level only
_FROM = (
    "FROM instance i JOIN series s ON s.series_key = i.series_key"
    " JOIN study st ON st.study_key = s.study_key"
    " JOIN patient p ON p.patient_key = st.patient_key"
)
_GROUP = {Level.PATIENT: "p.pseudo_id", Level.STUDY: "st.study_key", Level.SERIES: "s.series_key"}


@dataclass
class Query:
    """A parsed identifier: its level, what to match where, and what to return."""

    level: Level
    filters: list[tuple[Key, str]] = field(default_factory=list)
    header_filters: list[tuple[BaseTag, str, str]] = field(default_factory=list)
    """(tag, VR, matching value) for keys matched against a stored header."""
    returned: list[DataElement] = field(default_factory=list)

    def answers(self, key: Key) -> bool:
        """Whether ``key`` has a value at this query's level."""
        if key.kind in _LEVEL_BOUND:
            return key.level == self.level
        return key.level <= self.level

    def needs_header(self) -> bool:
        """Whether answers need a stored header (keys the catalog does not hold)."""
        return bool(self.header_filters) or any(e.keyword not in KEYS for e in self.returned)


@dataclass(frozen=True)
class Match:
    """One C-FIND match: catalog values by keyword and a representative blob."""

    values: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class Stored:
    """One instance to send in a C-GET or C-MOVE sub-operation."""

    sha256: str
    sop_class: str
    transfer_syntax: str | None


def parse(identifier: Dataset, levels: tuple[Level, ...]) -> Query:
    """Parse a request identifier for an information model allowing ``levels``."""
    text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    level = Level.__members__.get(text)
    if level is None or level not in levels:
        allowed = ", ".join(lv.name for lv in levels)
        raise DimseFailure(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel must be one of {allowed}")
    query = Query(level)
    for element in identifier:
        key = KEYS.get(element.keyword)
        if element.tag in _ANSWERED_BY_SCP or (key is not None and key.level > level):
            continue
        query.returned.append(element)
        value = "" if element.VR == "SQ" else match_text(element)
        if is_universal(value):
            continue
        if key is None:
            query.header_filters.append((element.tag, element.VR, value))
        elif query.answers(key) and key.kind != "count":
            query.filters.append((key, value))
    return query


def _selected(query: Query) -> list[Key]:
    wanted = {e.keyword for e in query.returned}
    wanted |= {UNIQUE_KEYS[lv] for lv in Level if lv <= query.level}
    return [k for k in KEYS.values() if k.keyword in wanted and query.answers(k)]


def find(con: duckdb.DuckDBPyConnection, query: Query) -> list[Match]:
    """The catalog matches of a C-FIND query (before any header matching)."""
    keys = _selected(query)
    group = _GROUP.get(query.level)
    cols = [k.sql if k.kind in _LEVEL_BOUND or not group else f"any_value({k.sql})" for k in keys]
    where, params, having, having_params = [], [], [], []
    for key, text in query.filters:
        if key.kind == "modalities":
            condition, values = sql_condition(KEYS["Modality"], text)
            having.append(f"bool_or({condition})")
            having_params += values
        else:
            condition, values = sql_condition(key, text)
            where.append(condition)
            params += values
    sql = f"SELECT {', '.join(cols)}, {'min(i.sha256)' if group else 'i.sha256'} {_FROM}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if group:
        sql += f" GROUP BY {group}"
    if having:
        sql += " HAVING " + " AND ".join(having)
    sql += f" ORDER BY {group or 'i.sop_uid'}"
    rows = con.execute(sql, [*params, *having_params]).fetchall()
    return [Match(dict(zip((k.keyword for k in keys), row, strict=False)), row[-1]) for row in rows]


def to_retrieve(con: duckdb.DuckDBPyConnection, query: Query) -> list[Stored]:
    """The instances a C-GET or C-MOVE identifier names (its level's unique key is required)."""
    unique = UNIQUE_KEYS[query.level]
    given = [text for key, text in query.filters if key.keyword == unique]
    if not given or any(c in given[0] for c in "*?"):
        level = query.level.name
        raise DimseFailure(IDENTIFIER_MISMATCH, f"{level} retrieve needs {unique} values")
    where, params = [], []
    for key, text in query.filters:
        if key.kind not in _LEVEL_BOUND:
            condition, values = sql_condition(key, text)
            where.append(condition)
            params += values
    sql = (
        f"SELECT i.sha256, i.sop_class, s.transfer_syntax {_FROM} WHERE {' AND '.join(where)}"
        " ORDER BY s.series_uid, i.sop_uid"
    )
    return [Stored(*row) for row in con.execute(sql, params).fetchall()]


def responses(
    query: Query, matches: Iterable[Match], blob_path: Callable[[str], Path], ae_title: str
) -> Iterator[Dataset]:
    """C-FIND response identifiers: requested keys (plus unique keys) of every match."""
    tags = [tag for tag, _, _ in query.header_filters]
    tags += [e.tag for e in query.returned if e.keyword not in KEYS]
    for match in matches:
        header = None
        if query.needs_header():
            header = dcmread(blob_path(match.sha256), stop_before_pixels=True, specific_tags=tags)
            if not all(header_matches(header.get(t), vr, v) for t, vr, v in query.header_filters):
                continue
        yield _answer(query, match, header, ae_title)


def _answer(query: Query, match: Match, header: Dataset | None, ae_title: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = query.level.name
    ds.RetrieveAETitle = ae_title
    for level in Level:
        if level <= query.level:
            keyword = UNIQUE_KEYS[level]
            ds.add(_element(keyword, match.values.get(keyword)))
    for element in query.returned:
        if element.keyword in KEYS:
            ds.add(_element(element.keyword, match.values.get(element.keyword)))
        elif header is not None and element.tag in header:
            ds[element.tag] = header[element.tag]
        else:
            ds[element.tag] = DataElement(
                element.tag, element.VR, [] if element.VR == "SQ" else None
            )
    return ds


def _element(keyword: str, value: Any) -> DataElement:
    if isinstance(value, date):
        value = value.strftime("%Y%m%d")
    elif isinstance(value, list):
        value = sorted(v for v in value if v is not None) or None
    return DataElement(keyword, dictionary_VR(keyword), value)
