"""The cohort filter language (DESIGN.md §5) and its compilation to parameterised SQL.

A filter is a mapping of field → values: OR within a field, AND across fields. Range fields take
``[low, high]`` (either end may be ``None``). ``label:<kind>`` matches series whose series, study
or patient carries a label of that kind with one of the values. User values only ever travel as
bound parameters; the SQL text is built from this module's own fixed fragments.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from oncofed.errors import QueryError

LABEL_PREFIX = "label:"
_LABEL_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Match(Enum):
    """How a field compares its values."""

    EXACT = "exact"
    UPPER = "upper"  # exact after upper-casing (DICOM code strings)
    CONTAINS = "contains"  # case-insensitive substring
    RANGE = "range"  # inclusive numeric range


@dataclass(frozen=True)
class Field:
    """A searchable field: its SQL expression over ``series`` (alias ``s``) and how it matches."""

    name: str
    expression: str
    match: Match
    help: str


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("collection", "s.collection_id", Match.EXACT, "collection id"),
        Field("cancer_type", "", Match.CONTAINS, "cancer type of the collection"),
        Field("modality", "s.modality", Match.UPPER, "DICOM modality (CT, MR, SM, ...)"),
        Field("body_part", "s.body_part", Match.UPPER, "BodyPartExamined"),
        Field("sex", "s.sex", Match.UPPER, "patient sex (M, F, O)"),
        Field("age", "s.age_years", Match.RANGE, "age in years at the study, e.g. 50..70"),
        Field("manufacturer", "s.manufacturer", Match.CONTAINS, "scanner manufacturer"),
        Field("model", "s.model", Match.CONTAINS, "scanner model name"),
        Field("sop_class", "s.sop_class", Match.EXACT, "SOP Class UID"),
    )
}


def valid_fields_text() -> str:
    """The valid field names, for error messages."""
    return ", ".join([*FIELDS, f"{LABEL_PREFIX}<kind>"])


@dataclass(frozen=True)
class Condition:
    """One parsed field condition."""

    field: str
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class CompiledFilter:
    """A WHERE clause over ``series s`` and its bound parameters."""

    where: str
    params: tuple[Any, ...]


def parse_filter(raw: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """Validate a filter mapping and return its conditions in a canonical order."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise QueryError(f"a cohort filter must be an object of field -> values, got {raw!r}")
    conditions = [_parse_condition(str(name), value) for name, value in raw.items()]
    return tuple(sorted(conditions, key=lambda c: c.field))


def _parse_condition(name: str, value: Any) -> Condition:
    if name.startswith(LABEL_PREFIX):
        kind = name[len(LABEL_PREFIX) :]
        if not _LABEL_KIND.match(kind):
            raise QueryError(
                f"invalid label kind {kind!r}: use lower-case letters, digits and _"
                " (e.g. isup_grade)"
            )
        return Condition(name, _as_strings(name, value))
    field = FIELDS.get(name)
    if field is None:
        raise QueryError(f"unknown field {name!r}; valid fields: {valid_fields_text()}")
    if field.match is Match.RANGE:
        low, high = _as_range(name, value)
        return Condition(name, low=low, high=high)
    values = _as_strings(name, value)
    if field.match is Match.UPPER:
        values = tuple(v.upper() for v in values)
    return Condition(name, values)


def _as_strings(name: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str | int | float) else value
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise QueryError(
            f"field {name!r} needs a value or a non-empty list of values, got {value!r}"
        )
    out: list[str] = []
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise QueryError(f"field {name!r}: values must be strings or numbers, got {item!r}")
        text = str(item).strip()
        if not text:
            raise QueryError(f"field {name!r}: empty value")
        out.append(text)
    return tuple(dict.fromkeys(out))


def _as_range(name: str, value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, str):
        return parse_range_text(name, value)
    if not isinstance(value, Sequence) or len(value) != 2:
        raise QueryError(f"field {name!r} takes a range [low, high] (null for open), got {value!r}")
    low, high = (_as_bound(name, v) for v in value)
    if low is None and high is None:
        raise QueryError(f"field {name!r}: a range needs at least one bound")
    if low is not None and high is not None and low > high:
        raise QueryError(f"field {name!r}: empty range, {low} is greater than {high}")
    return low, high


def _as_bound(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"field {name!r}: {value!r} is not a number") from exc
    if not math.isfinite(number):
        raise QueryError(f"field {name!r}: {value!r} is not a finite number")
    return number


def parse_range_text(name: str, text: str) -> tuple[float | None, float | None]:
    """Parse ``50..70``, ``50..`` or ``..70`` (a single number means exactly that value)."""
    if ".." not in text:
        exact = _as_bound(name, text)
        return exact, exact
    low_text, _, high_text = text.partition("..")
    return _as_range(name, [low_text.strip() or None, high_text.strip() or None])


def compile_filter(conditions: Sequence[Condition]) -> CompiledFilter:
    """Turn parsed conditions into a WHERE clause over ``series s`` with bound parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for condition in conditions:
        clause, clause_params = _compile_condition(condition)
        clauses.append(clause)
        params.extend(clause_params)
    return CompiledFilter(" AND ".join(clauses) if clauses else "TRUE", tuple(params))


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _compile_condition(condition: Condition) -> tuple[str, list[Any]]:
    if condition.field.startswith(LABEL_PREFIX):
        kind = condition.field[len(LABEL_PREFIX) :]
        clause = (
            "EXISTS (SELECT 1 FROM label l WHERE l.kind = ? AND l.value IN ("
            + _placeholders(len(condition.values))
            + ") AND l.patient_key = s.patient_key"
            " AND (l.study_key IS NULL OR l.study_key = s.study_key)"
            " AND (l.series_key IS NULL OR l.series_key = s.series_key))"
        )
        return clause, [kind, *condition.values]
    field = FIELDS[condition.field]
    if field.name == "cancer_type":
        patterns = [f"%{_escape_like(v.lower())}%" for v in condition.values]
        any_like = " OR ".join(["lower(t.cancer_type) LIKE ? ESCAPE '\\'"] * len(patterns))
        clause = (
            "s.collection_id IN (SELECT c.collection_id FROM collection c,"
            f" unnest(c.cancer_types) AS t(cancer_type) WHERE {any_like})"
        )
        return clause, patterns
    if field.match is Match.RANGE:
        parts, params = [], []
        if condition.low is not None:
            parts.append(f"{field.expression} >= ?")
            params.append(condition.low)
        if condition.high is not None:
            parts.append(f"{field.expression} <= ?")
            params.append(condition.high)
        return "(" + " AND ".join(parts) + ")", params
    if field.match is Match.CONTAINS:
        patterns = [f"%{_escape_like(v.lower())}%" for v in condition.values]
        any_like = " OR ".join([f"lower({field.expression}) LIKE ? ESCAPE '\\'"] * len(patterns))
        return f"({any_like})", patterns
    return f"{field.expression} IN ({_placeholders(len(condition.values))})", list(condition.values)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse_cli_terms(terms: Sequence[str]) -> dict[str, Any]:
    """Parse CLI ``--where`` terms like ``modality=MR,CT`` or ``age=50..70`` into a filter."""
    raw: dict[str, Any] = {}
    for term in terms:
        name, sep, value = term.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise QueryError(
                f"--where {term!r}: expected FIELD=VALUE[,VALUE...] or FIELD=LOW..HIGH"
            )
        field = FIELDS.get(name)
        if field is not None and field.match is Match.RANGE:
            raw[name] = value.strip()
        else:
            raw[name] = [v for v in (part.strip() for part in value.split(",")) if v]
    return raw
