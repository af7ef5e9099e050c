"""Reference labels: read a hospital's label CSV, map its identifiers to the catalog's, store them.

Hospitals key labels by their own identifiers (Patient ID, Study/Series Instance UID, slide
file); the catalog holds only de-identified ones. :class:`IdentifierMap` applies the same keyed
derivations ingest applied (pseudonym of ``id:<issuer>:<patient id>``, keyed UID remap), so a
label lands on exactly the patient, study or series it names, and the original identifiers are
never written anywhere. A label's identity is (subject, kind, source): importing the same file
again changes nothing, a corrected value replaces the old one.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from oncofed.catalog.schema import patient_natural_key, surrogate_key
from oncofed.errors import OncofedError

REQUIRED_COLUMNS = ("patient_id", "kind", "value")
OPTIONAL_COLUMNS = ("issuer", "study_uid", "series_uid", "slide", "study_id", "source",
                    "confidence")  # fmt: skip
MAX_FREE_TEXT = 200
_GLEASON = re.compile(r"^\s*([1-5])\s*\+\s*([1-5])\s*$")
_DIAGNOSIS_KIND = re.compile(r"^diagnosis_[a-z0-9_]{1,54}$")


class LabelError(OncofedError):
    """A label file is unreadable or has invalid rows; nothing was imported."""

    code = "invalid_labels"


def _integer_in(low: int, high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number {low}-{high}")
        return str(int(value))

    return check


def _gleason(value: str) -> str:
    match = _GLEASON.match(value)
    if match is None:
        raise ValueError("must be primary+secondary pattern, e.g. 3+4")
    return f"{match[1]}+{match[2]}"


def _binary(value: str) -> str:
    if value not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return value


def _free_text(value: str) -> str:
    if len(value) > MAX_FREE_TEXT:
        raise ValueError(f"is longer than {MAX_FREE_TEXT} characters")
    return value


LABEL_KINDS: dict[str, Callable[[str], str]] = {
    "isup_grade": _integer_in(0, 5),
    "gleason": _gleason,
    "malignant": _binary,
    "birads": _integer_in(0, 6),
}
"""Known label kinds and their value checks; ``diagnosis_<name>`` kinds take free text."""


def valid_kinds_text() -> str:
    """The valid kinds, for error messages."""
    return ", ".join([*LABEL_KINDS, "diagnosis_<name>"])


def normalise_label(kind: str, value: str) -> str:
    """The stored form of ``value`` for ``kind``; ``ValueError`` says what is wrong."""
    check = LABEL_KINDS.get(kind)
    if check is None and _DIAGNOSIS_KIND.match(kind):
        check = _free_text
    if check is None:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {valid_kinds_text()}")
    if not value:
        raise ValueError(f"{kind}: empty value")
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"{kind} value {value!r} {exc}") from exc


@dataclass(frozen=True)
class LabelRow:
    """One validated CSV row, still with the hospital's own identifiers."""

    line: int
    patient_id: str
    kind: str
    value: str
    issuer: str = ""
    study_uid: str = ""
    series_uid: str = ""
    slide: str = ""
    study_id: str = ""
    source: str | None = None
    confidence: float | None = None


def read_label_csv(path: Path) -> list[LabelRow]:
    """Read and validate a label CSV; every bad row is reported (by line) in one error."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"cannot read label file {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if missing or unknown:
        raise LabelError(
            f"{path}: header needs {', '.join(REQUIRED_COLUMNS)} (optional:"
            f" {', '.join(OPTIONAL_COLUMNS)}); missing {missing}, unknown {unknown}"
        )
    rows: list[LabelRow] = []
    problems: list[str] = []
    for line, raw in enumerate(raw_rows, start=2):
        cells = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        try:
            rows.append(_row(line, cells))
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise LabelError(f"{path}: {len(problems)} invalid row(s): " + "; ".join(problems[:20]))
    if not rows:
        raise LabelError(f"{path}: no label rows")
    return rows


def _row(line: int, cells: Mapping[str, str]) -> LabelRow:
    if not cells.get("patient_id"):
        raise ValueError("patient_id is empty")
    if cells.get("slide") and cells.get("series_uid"):
        raise ValueError("give slide or series_uid, not both")
    kind = cells.get("kind", "")
    value = normalise_label(kind, cells.get("value", ""))
    confidence: float | None = None
    if cells.get("confidence"):
        try:
            confidence = float(cells["confidence"])
        except ValueError:
            confidence = -1.0
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence {cells['confidence']!r} is not a number in [0, 1]")
    return LabelRow(
        line=line,
        patient_id=cells["patient_id"],
        kind=kind,
        value=value,
        issuer=cells.get("issuer", ""),
        study_uid=cells.get("study_uid", ""),
        series_uid=cells.get("series_uid", ""),
        slide=cells.get("slide", ""),
        study_id=cells.get("study_id", ""),
        source=cells.get("source") or None,
        confidence=confidence,
    )


class Pseudonymiser(Protocol):
    """The keyed derivations ingest used (``oncofed.deid.keys.Keyring`` is one)."""

    def pseudonym(self, identity: str) -> str:
        """The patient pseudonym of an identity."""
        ...

    def uid(self, uid: str) -> str:
        """The replacement of a UID."""
        ...


class Verbatim:
    """Identifiers of a collection declared de-identified at source are stored as given."""

    def pseudonym(self, identity: str) -> str:
        """The Patient ID itself (the part after ``id:<issuer>:``)."""
        return identity.split(":", 2)[2]

    def uid(self, uid: str) -> str:
        """The UID itself."""
        return uid


@dataclass(frozen=True)
class IdentifierMap:
    """Maps a row's original identifiers to catalog keys, as ingest derived them."""

    collection_id: str
    keys: Pseudonymiser
    retain_uids: bool = False
    slide_ids: Mapping[int, str] = field(default_factory=dict)
    """Line number → catalog slide id of rows naming a slide file the caller found."""

    def patient_key(self, row: LabelRow) -> int:
        """The catalog key of the row's patient (pseudonym of ``id:<issuer>:<patient id>``)."""
        pseudonym = self.keys.pseudonym(f"id:{row.issuer}:{row.patient_id}")
        return surrogate_key(patient_natural_key(self.collection_id, pseudonym))

    def uid_key(self, uid: str) -> int | None:
        """The catalog key of a study or series UID, or None when not given."""
        if not uid:
            return None
        return surrogate_key(uid if self.retain_uids else self.keys.uid(uid))


@dataclass(frozen=True)
class Unmatched:
    """A row that names nothing in the collection."""

    line: int
    reason: str


@dataclass
class LabelImportResult:
    """What an import changed."""

    collection: str
    rows: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    unmatched: list[Unmatched] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.collection}: {self.rows} rows, {self.added} added, {self.updated} updated,"
            f" {self.unchanged} unchanged, {len(self.unmatched)} unmatched"
        )


_SUBJECTS = pa.schema(
    [
        ("line", pa.int64()),
        ("patient_key", pa.uint64()),
        ("study_key", pa.uint64()),
        ("series_key", pa.uint64()),
        ("slide_id", pa.string()),
        ("kind", pa.string()),
        ("value", pa.string()),
        ("source", pa.string()),
        ("confidence", pa.float64()),
    ]
)
# Each row resolved against the catalog: the study/series keys it names must belong to the
# patient; a slide or series fills in its study. `problem` says why a row matches nothing.
_RESOLVE = """
SELECT r.line, r.patient_key,
       coalesce(r.study_key, se.study_key) AS study_key,
       coalesce(r.series_key, sl.series_key) AS series_key,
       r.kind, r.value, r.source, r.confidence,
       CASE
         WHEN p.patient_key IS NULL THEN 'no such patient in the collection'
         WHEN r.slide_id = '' THEN 'no such slide file'
         WHEN r.slide_id IS NOT NULL AND sl.series_key IS NULL
           THEN 'slide not catalogued for this patient'
         WHEN r.study_key IS NOT NULL AND st.study_key IS NULL
           THEN 'study not found for this patient'
         WHEN coalesce(r.series_key, sl.series_key) IS NOT NULL AND se.series_key IS NULL
           THEN 'series not found for this patient and study'
       END AS problem
FROM label_rows r
LEFT JOIN (SELECT DISTINCT patient_key FROM patient WHERE collection_id = $collection) p
  ON p.patient_key = r.patient_key
LEFT JOIN slide sl ON sl.slide_id = r.slide_id AND sl.patient_key = r.patient_key
  AND sl.collection_id = $collection
LEFT JOIN (SELECT DISTINCT study_key, patient_key FROM study WHERE collection_id = $collection) st
  ON st.study_key = r.study_key AND st.patient_key = r.patient_key
LEFT JOIN (SELECT DISTINCT series_key, study_key, patient_key FROM series
           WHERE collection_id = $collection) se
  ON se.series_key = coalesce(r.series_key, sl.series_key) AND se.patient_key = r.patient_key
  AND (r.study_key IS NULL OR se.study_key = r.study_key)
"""
_SAME_SUBJECT = (
    "l.collection_id = $collection AND l.patient_key = m.patient_key"
    " AND l.study_key IS NOT DISTINCT FROM m.study_key"
    " AND l.series_key IS NOT DISTINCT FROM m.series_key"
    " AND l.kind = m.kind AND l.source IS NOT DISTINCT FROM m.source"
)


def import_labels(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[LabelRow],
    identifiers: IdentifierMap,
    *,
    strict: bool = False,
) -> LabelImportResult:
    """Store the rows that match the collection in one transaction; report the others.

    With ``strict`` any unmatched row makes the import fail and nothing is written.
    """
    collection = identifiers.collection_id
    result = LabelImportResult(collection=collection, rows=len(rows))
    table = pa.Table.from_pylist([_subject(row, identifiers) for row in rows], schema=_SUBJECTS)
    params = {"collection": collection}
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("label_rows", table)
        con.execute(f"CREATE TEMP TABLE label_matched AS {_RESOLVE}", params)
        con.unregister("label_rows")
        problems = con.execute(
            "SELECT line, problem FROM label_matched WHERE problem IS NOT NULL ORDER BY line"
        ).fetchall()
        result.unmatched = [Unmatched(int(line), str(problem)) for line, problem in problems]
        _check_conflicts(con)
        if strict and result.unmatched:
            raise LabelError(
                f"{len(result.unmatched)} row(s) match nothing in {collection!r}: "
                + "; ".join(f"line {u.line}: {u.reason}" for u in result.unmatched[:20])
            )
        result.unchanged, result.updated, result.added = _write(con, params)
        con.execute("DROP TABLE label_matched")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


def _subject(row: LabelRow, identifiers: IdentifierMap) -> dict[str, object]:
    return {
        "line": row.line,
        "patient_key": identifiers.patient_key(row),
        "study_key": identifiers.uid_key(row.study_uid),
        "series_key": identifiers.uid_key(row.series_uid),
        "slide_id": identifiers.slide_ids.get(row.line, "") if row.slide else None,
        "kind": row.kind,
        "value": row.value,
        "source": row.source,
        "confidence": row.confidence,
    }


def _check_conflicts(con: duckdb.DuckDBPyConnection) -> None:
    """Two rows giving the same subject, kind and source different values cannot both hold."""
    clashes = con.execute(
        "SELECT list(line ORDER BY line) FROM label_matched WHERE problem IS NULL"
        " GROUP BY patient_key, study_key, series_key, kind, source"
        " HAVING count(DISTINCT value) > 1 OR count(DISTINCT confidence) > 1 ORDER BY 1"
    ).fetchall()
    if clashes:
        lines = "; ".join("lines " + ", ".join(map(str, c[0])) for c in clashes[:20])
        raise LabelError(f"rows give one subject, kind and source different values: {lines}")


def _write(con: duckdb.DuckDBPyConnection, params: dict[str, str]) -> tuple[int, int, int]:
    """Insert new labels, update changed ones; returns (unchanged, updated, added)."""
    con.execute(
        "CREATE TEMP TABLE label_todo AS SELECT DISTINCT ON (m.patient_key, m.study_key,"
        " m.series_key, m.kind, m.source) m.*, (SELECT any_value(l.value = m.value AND"
        " l.confidence IS NOT DISTINCT FROM m.confidence) FROM label l WHERE"
        f" {_SAME_SUBJECT}) AS same FROM label_matched m WHERE m.problem IS NULL",
        params,
    )
    counts = con.execute(
        "SELECT count(*) FILTER (same), count(*) FILTER (NOT same),"
        " count(*) FILTER (same IS NULL) FROM label_todo"
    ).fetchone()
    assert counts is not None
    con.execute(
        f"DELETE FROM label l USING label_todo m WHERE NOT m.same AND {_SAME_SUBJECT}", params
    )
    con.execute(
        "INSERT INTO label (collection_id, patient_key, study_key, series_key, kind, value,"
        " source, confidence) SELECT $collection, patient_key, study_key, series_key, kind,"
        " value, source, confidence FROM label_todo WHERE same IS NOT TRUE",
        params,
    )
    con.execute("DROP TABLE label_todo")
    return int(counts[0]), int(counts[1]), int(counts[2])
