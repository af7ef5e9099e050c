"""Versioned catalog schema: migrations on open, refusal of catalogs from the future."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.schema import LATEST_VERSION, MIGRATIONS, surrogate_key
from oncofed.errors import SchemaVersionError


def _make_catalog_at_version(path: Path, version: int, *rows: str) -> None:
    """A catalog as oncofed wrote it at ``version``, holding ``rows`` (INSERT statements)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for migration in MIGRATIONS[:version]:
        for statement in migration.statements:
            con.execute(statement)
    con.execute("INSERT INTO schema_meta VALUES ('schema_version', ?)", [str(version)])
    for statement in rows:
        con.execute(statement)
    con.close()


def test_new_catalog_is_at_the_latest_version(catalog: Catalog) -> None:
    assert catalog.schema_version == LATEST_VERSION
    assert set(catalog.table_counts()) >= {"collection", "patient", "series", "instance", "label"}


def test_older_catalog_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _make_catalog_at_version(
        path,
        1,
        "INSERT INTO collection (collection_id, title, source) VALUES ('c1', 'old one', 'ingest')",
    )
    with Catalog(path) as catalog:
        assert catalog.schema_version == LATEST_VERSION
        assert catalog.table_counts()["collection"] == 1
        assert catalog.table_counts()["label"] == 0


def test_older_catalog_opened_read_only_says_it_needs_migrating(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _make_catalog_at_version(path, 1)
    with pytest.raises(SchemaVersionError, match="needs migrating to"):
        Catalog(path, read_only=True)


def test_newer_catalog_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    Catalog(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE schema_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(SchemaVersionError, match=r"schema version 999, newer than .*upgrade"):
        Catalog(path)


def test_python_surrogate_keys_match_duckdb() -> None:
    texts = ["1.2.840.113619.2.55.3", "coll\x1fFAKE-0001", "ünïcode"]
    rows = duckdb.sql(
        "SELECT t, md5_number_upper(t) FROM unnest(?) AS u(t)", params=[texts]
    ).fetchall()
    assert {t: surrogate_key(t) for t in texts} == dict(rows)


def test_a_catalog_with_rows_gains_the_lookup_indexes(tmp_path: Path) -> None:
    path = tmp_path / "v4.duckdb"
    _make_catalog_at_version(
        path,
        4,
        "INSERT INTO instance (sop_uid, series_key, sha256, size) VALUES ('1.2.3', 7, 'ab', 1)",
    )
    with Catalog(path) as catalog:
        indexes = catalog.con.execute(
            "SELECT table_name, expressions FROM duckdb_indexes() ORDER BY index_name"
        ).fetchall()
        assert set(indexes) == {
            ("instance", "[series_key]"),
            ("instance", "[sop_uid]"),
            ("series", "[series_key]"),
            ("study", "[study_key]"),
        }
        found = catalog.con.execute(
            "SELECT sha256 FROM instance WHERE series_key = ?::UBIGINT", [7]
        ).fetchall()
        assert found == [("ab",)]
