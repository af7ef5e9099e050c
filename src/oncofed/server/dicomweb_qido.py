"""QIDO-RS: DICOM attribute queries compiled to parameterised SQL over the catalog."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb

from oncofed.server.dicomweb_attrs import ATTRS, HEADER_DEFAULTS, Attr, Level, columns, keyword_of
from oncofed.server.dicomweb_common import DicomwebProblem, check_uid

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_OFFSET = 10**12
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
_DATE = re.compile(r"^\d{8}$")
_LIST_SEPARATORS = re.compile(r"[,\\]")
_FROM = (
    "FROM instance i JOIN series s ON s.series_key = i.series_key"
    " JOIN study st ON st.study_key = s.study_key"
    " JOIN patient p ON p.patient_key = st.patient_key"
)


@dataclass
class Search:
    """A parsed QIDO request."""

    level: Level
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    include_all: bool = False
    include: list[str] = field(default_factory=list)
    filters: list[tuple[Attr, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    collections: list[str] | None = None  # None: every collection

    def header_fields(self) -> list[str]:
        """Attributes to read from a stored header (beyond the catalog's)."""
        wanted = [name for name in self.include if name not in ATTRS]
        if self.include_all:
            for level in Level:
                if level <= self.level:
                    wanted += HEADER_DEFAULTS[level]
        return list(dict.fromkeys(wanted))


def parse_search(level: Level, items: Iterable[tuple[str, str]], fixed: dict[str, str]) -> Search:
    """Parse query parameters (and the UIDs fixed by the path) into a Search."""
    search = Search(level)
    ignored: list[str] = []
    for name, uid in fixed.items():
        search.filters.append((ATTRS[name], check_uid(uid, name)))
    for name, value in items:
        key = name.strip()
        if key.lower() in _CONTROL:
            _control(search, key.lower(), value)
            continue
        keyword = keyword_of(key)
        if keyword == "Modality" and level == Level.STUDY:
            keyword = "ModalitiesInStudy"
        attr = ATTRS.get(keyword)
        if keyword == "ModalitiesInStudy" and level == Level.STUDY:
            search.filters.append((ATTRS["Modality"], value))
        elif attr is None or attr.kind == "computed" or attr.level > level:
            ignored.append(keyword)
        else:
            search.filters.append((attr, value))
    if ignored:
        names = ", ".join(sorted(set(ignored)))
        search.warnings.append(f"The following attributes are not supported as keys: {names}")
    return search


def _control(search: Search, name: str, value: str) -> None:
    if name in ("limit", "offset"):
        text = value.strip()
        number = int(text) if text.isascii() and text.isdigit() else -1
        if not 0 <= number <= MAX_OFFSET:
            raise DicomwebProblem(
                400, "invalid_query", f"{name} must be an integer from 0 to {MAX_OFFSET}"
            )
        if name == "limit":
            search.limit = min(number, MAX_LIMIT)
        else:
            search.offset = number
    elif name == "includefield":
        for item in value.split(","):
            if item.strip().lower() == "all":
                search.include_all = True
            elif item.strip():
                search.include.append(keyword_of(item))
    elif value.strip().lower() == "true":
        search.warnings.append("fuzzymatching is not supported; exact matching was applied")


@dataclass
class _Sql:
    where: list[str] = field(default_factory=list)
    having: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    having_params: list[Any] = field(default_factory=list)


def _condition(attr: Attr, value: str) -> tuple[str, list[Any]] | None:
    """SQL and parameters for one key, or None for universal matching."""
    text = value.strip()
    if text in ("", "*"):
        return None
    if attr.kind == "uid":
        uids = [check_uid(u.strip(), attr.keyword) for u in _LIST_SEPARATORS.split(text)]
        return f"{attr.sql} IN ({', '.join('?' * len(uids))})", list(uids)
    if attr.kind == "date":
        return _date_condition(attr, text)
    if attr.kind == "int":
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise DicomwebProblem(400, "invalid_query", f"{attr.keyword} must be an integer")
        return f"{attr.sql} = ?", [int(text)]
    values = _LIST_SEPARATORS.split(text) if attr.kind == "code" else [text]
    parts, params = [], []
    for item in values:
        sql, param = _text_condition(attr.sql, item.strip())
        parts.append(sql)
        params.append(param)
    return "(" + " OR ".join(parts) + ")", params


def _text_condition(column: str, value: str) -> tuple[str, str]:
    if "*" not in value and "?" not in value:
        return f"{column} = ?", value
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%").replace("?", "_")
    return f"{column} LIKE ? ESCAPE '\\'", pattern


def _parse_date(text: str, keyword: str) -> date:
    if not _DATE.match(text):
        raise DicomwebProblem(400, "invalid_query", f"{keyword}: not a date YYYYMMDD: {text!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise DicomwebProblem(400, "invalid_query", f"{keyword}: no such date {text!r}") from None


def _date_condition(attr: Attr, text: str) -> tuple[str, list[Any]]:
    if "-" not in text:
        return f"{attr.sql} = ?", [_parse_date(text, attr.keyword)]
    low, _, high = text.partition("-")
    if not low and not high:
        raise DicomwebProblem(400, "invalid_query", f"{attr.keyword}: empty range")
    parts, params = [], []
    if low:
        parts.append(f"{attr.sql} >= ?")
        params.append(_parse_date(low, attr.keyword))
    if high:
        parts.append(f"{attr.sql} <= ?")
        params.append(_parse_date(high, attr.keyword))
    return " AND ".join(parts), params


def _compile(search: Search) -> tuple[str, list[Any]]:
    sql = _Sql()
    if search.collections is not None:
        marks = ", ".join("?" * len(search.collections))
        sql.where.append(f"s.collection_id IN ({marks})" if marks else "FALSE")
        sql.params += search.collections
    for attr, value in search.filters:
        compiled = _condition(attr, value)
        if compiled is None:
            continue
        condition, params = compiled
        if search.level == Level.STUDY and attr.level > Level.STUDY:  # ModalitiesInStudy
            sql.having.append(f"bool_or({condition})")
            sql.having_params += params
        else:
            sql.where.append(condition)
            sql.params += params
    cols = columns(search.level)
    order = {Level.STUDY: "st.study_uid", Level.SERIES: "s.series_uid", Level.INSTANCE: "i.sop_uid"}
    rep = "min(i.sha256)" if search.level < Level.INSTANCE else "i.sha256"
    text = f"SELECT {', '.join(a.sql for a in cols)}, {rep} {_FROM}"
    if sql.where:
        text += " WHERE " + " AND ".join(sql.where)
    if search.level < Level.INSTANCE:
        text += " GROUP BY ALL"
    if sql.having:
        text += " HAVING " + " AND ".join(sql.having)
    text += f" ORDER BY {order[search.level]} LIMIT ? OFFSET ?"
    return text, [*sql.params, *sql.having_params, search.limit + 1, search.offset]


@dataclass(frozen=True)
class Match:
    """One result: its catalog values (by keyword) and a representative blob."""

    values: dict[str, Any]
    sha256: str


def run(con: duckdb.DuckDBPyConnection, search: Search) -> tuple[list[Match], bool]:
    """The matches of ``search`` and whether more exist beyond ``limit``."""
    text, params = _compile(search)
    rows = con.execute(text, params).fetchall()
    cols = columns(search.level)
    matches = [
        Match(dict(zip((a.keyword for a in cols), row, strict=False)), row[-1]) for row in rows
    ]
    return matches[: search.limit], len(matches) > search.limit


def to_json(match: Match, level: Level, url_of: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """A match as a DICOM JSON object (catalog values, RetrieveURL, availability)."""
    out: dict[str, Any] = {}
    for attr in columns(level):
        out[attr.tag] = _element(attr, match.values[attr.keyword])
    out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    out["00081190"] = {"vr": "UR", "Value": [url_of(match.values)]}
    return out


def _element(attr: Attr, value: Any) -> dict[str, Any]:
    if value is None or value == []:
        return {"vr": attr.vr}
    if isinstance(value, date):
        value = value.strftime("%Y%m%d")
    if isinstance(value, list):
        return {"vr": attr.vr, "Value": sorted(v for v in value if v is not None)}
    if attr.vr == "PN":
        value = {"Alphabetic": value}
    return {"vr": attr.vr, "Value": [value]}
