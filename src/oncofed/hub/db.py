"""The hub's own embedded DuckDB database, and UTC time helpers for its TIMESTAMP columns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the hub database file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path))


def to_db(moment: datetime | None) -> datetime | None:
    """An aware time as the naive UTC value a TIMESTAMP column stores."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def from_db(value: datetime | None) -> datetime | None:
    """A TIMESTAMP column value (naive UTC) as an aware UTC time."""
    return None if value is None else value.replace(tzinfo=UTC)
