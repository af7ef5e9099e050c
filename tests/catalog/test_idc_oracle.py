"""The IDC import, checked against counts computed directly over idc-index-data's parquet.

The oracle below is written independently of oncofed's SQL: it reads the raw parquet columns
and expresses each filter the way an IDC user would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.idc import bundled_index, import_idc, split_list
from oncofed.errors import ReferenceImportError

INDEX = bundled_index()
AGE_YEARS = (
    "CASE WHEN regexp_full_match(PatientAge, '[0-9]{3}Y') THEN CAST(left(PatientAge, 3) AS INT)"
    " WHEN regexp_full_match(PatientAge, '[0-9]{3}M') THEN CAST(left(PatientAge, 3) AS INT) // 12"
    " WHEN regexp_full_match(PatientAge, '[0-9]{3}[WD]') THEN 0 END"
)


@pytest.fixture(scope="module")
def idc_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    path = tmp_path_factory.mktemp("idc") / "catalog.duckdb"
    with Catalog(path) as catalog:
        import_idc(catalog.con)
        yield catalog


@pytest.fixture(scope="module")
def oracle() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    series, collections = (
        str(p).replace("'", "''") for p in (INDEX.series_parquet, INDEX.collections_parquet)
    )
    con.execute(
        f"CREATE VIEW raw AS SELECT * FROM read_parquet('{series}') WHERE PatientID IS NOT NULL"
    )
    con.execute(f"CREATE VIEW coll AS SELECT * FROM read_parquet('{collections}')")
    yield con
    con.close()


def oracle_counts(con: duckdb.DuckDBPyConnection, where: str) -> tuple[int, ...]:
    row = con.execute(
        "SELECT count(DISTINCT (collection_id, PatientID)), count(DISTINCT StudyInstanceUID),"
        " count(*), coalesce(sum(instanceCount), 0),"
        " coalesce(sum(CAST(round(series_size_MB * 1000000) AS BIGINT)), 0)"
        f" FROM raw WHERE {where}"
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


CASES: list[tuple[dict[str, Any], str]] = [
    ({}, "TRUE"),
    ({"modality": ["MR"]}, "Modality = 'MR'"),
    ({"modality": ["mr", "ct"]}, "Modality IN ('MR', 'CT')"),
    ({"modality": ["SM"]}, "Modality = 'SM'"),
    ({"body_part": ["breast"]}, "BodyPartExamined = 'BREAST'"),
    ({"body_part": ["PROSTATE", "PELVIS"]}, "BodyPartExamined IN ('PROSTATE', 'PELVIS')"),
    ({"collection": ["prostatex"]}, "collection_id = 'prostatex'"),
    ({"collection": ["tcga_brca", "tcga_luad"]}, "collection_id IN ('tcga_brca', 'tcga_luad')"),
    ({"sex": ["F"]}, "PatientSex = 'F'"),
    ({"sex": ["M"], "modality": ["CT"]}, "PatientSex = 'M' AND Modality = 'CT'"),
    ({"age": [50, 70]}, f"({AGE_YEARS}) BETWEEN 50 AND 70"),
    ({"age": "..18"}, f"({AGE_YEARS}) <= 18"),
    ({"age": [80, None], "sex": ["F"]}, f"({AGE_YEARS}) >= 80 AND PatientSex = 'F'"),
    ({"manufacturer": ["siemens"]}, "Manufacturer ILIKE '%siemens%'"),
    (
        {"manufacturer": ["GE MEDICAL", "philips"], "modality": ["MR"]},
        "(Manufacturer ILIKE '%ge medical%' OR Manufacturer ILIKE '%philips%') AND Modality = 'MR'",
    ),
    (
        {"cancer_type": ["prostate"]},
        "collection_id IN (SELECT collection_id FROM coll WHERE cancer_types ILIKE '%prostate%')",
    ),
    (
        {"cancer_type": ["Breast"], "modality": ["MG"], "age": [40, 75]},
        "collection_id IN (SELECT collection_id FROM coll WHERE cancer_types ILIKE '%breast%')"
        f" AND Modality = 'MG' AND ({AGE_YEARS}) BETWEEN 40 AND 75",
    ),
    (
        {"cancer_type": ["Lung"], "sex": ["F"], "body_part": ["CHEST"], "modality": ["CT", "PT"]},
        "collection_id IN (SELECT collection_id FROM coll WHERE cancer_types ILIKE '%lung%')"
        " AND PatientSex = 'F' AND BodyPartExamined = 'CHEST' AND Modality IN ('CT', 'PT')",
    ),
    (
        {"sop_class": ["1.2.840.10008.5.1.4.1.1.77.1.6"]},
        "SOPClassUID = '1.2.840.10008.5.1.4.1.1.77.1.6'",
    ),
    ({"model": ["aquilion"]}, "ManufacturerModelName ILIKE '%aquilion%'"),
    ({"modality": ["MR"], "body_part": ["FOOT"], "collection": ["prostatex"]}, "FALSE"),
    ({"collection": ["no_such_collection"]}, "FALSE"),
    ({"collection": ["' OR 1=1 --"]}, "FALSE"),
]


@pytest.mark.parametrize(("where", "oracle_where"), CASES, ids=[str(c[0]) for c in CASES])
def test_counts_match_direct_duckdb_on_the_parquet(
    idc_catalog: Catalog,
    oracle: duckdb.DuckDBPyConnection,
    where: dict[str, Any],
    oracle_where: str,
) -> None:
    counts = idc_catalog.query(where).counts
    got = (counts.patients, counts.studies, counts.series, counts.instances, counts.bytes)
    assert got == oracle_counts(oracle, oracle_where)


def test_whole_index_totals(idc_catalog: Catalog, oracle: duckdb.DuckDBPyConnection) -> None:
    counts = idc_catalog.query({}).counts
    total = oracle.execute("SELECT count(*), sum(instanceCount) FROM raw").fetchone()
    assert (counts.series, counts.instances) == total
    assert counts.series > 1_000_000
    assert counts.instances > 58_000_000
    assert (
        len(idc_catalog.collections()) == oracle.execute("SELECT count(*) FROM coll").fetchone()[0]
    )


@pytest.mark.parametrize(
    ("facet", "column"),
    [("modality", "Modality"), ("collection", "collection_id"), ("sex", "PatientSex")],
)
def test_facets_match_group_by_on_the_parquet(
    idc_catalog: Catalog, oracle: duckdb.DuckDBPyConnection, facet: str, column: str
) -> None:
    result = idc_catalog.query({"body_part": ["BREAST"]}, [facet], facet_limit=1000)
    got = {b.value: (b.patients, b.series) for b in result.facets[facet]}
    rows = oracle.execute(
        f"SELECT {column}, count(DISTINCT (collection_id, PatientID)), count(*) FROM raw"
        f" WHERE BodyPartExamined = 'BREAST' AND ({column} IS NULL OR {column} IN"
        " ('M', 'F', 'O') OR ? <> 'sex') GROUP BY 1",
        [facet],
    ).fetchall()
    expected = {r[0]: (r[1], r[2]) for r in rows}
    if facet == "sex":
        unknown = oracle.execute(
            "SELECT count(DISTINCT (collection_id, PatientID)), count(*) FROM raw"
            " WHERE BodyPartExamined = 'BREAST' AND (PatientSex IS NULL"
            " OR PatientSex NOT IN ('M', 'F', 'O'))"
        ).fetchone()
        expected = {k: v for k, v in expected.items() if k is not None} | {None: unknown}
    assert got == expected


def test_age_facet_bands(idc_catalog: Catalog) -> None:
    result = idc_catalog.query({"cancer_type": ["prostate"]}, ["age"], facet_limit=100)
    bands = {b.value for b in result.facets["age"]} - {None}
    assert bands and all(len(b) == 5 and b[2] == "-" for b in bands)
    in_band = idc_catalog.query({"cancer_type": ["prostate"], "age": [60, 69]}).counts
    sixties = next(b for b in result.facets["age"] if b.value == "60-69")
    assert (sixties.patients, sixties.series) == (in_band.patients, in_band.series)


def test_reimport_of_the_same_version_changes_nothing(idc_catalog: Catalog) -> None:
    before = idc_catalog.table_counts()
    again = import_idc(idc_catalog.con)
    assert again.skipped_same_version
    assert idc_catalog.table_counts() == before


def test_upgrade_replaces_the_old_rows_whole(idc_catalog: Catalog, tmp_path: Path) -> None:
    before = idc_catalog.table_counts()
    forced = import_idc(idc_catalog.con, force=True)
    assert not forced.skipped_same_version
    assert idc_catalog.table_counts() == before


def test_local_collection_with_an_idc_name_blocks_the_import(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.duckdb") as catalog:
        catalog.con.execute(
            "INSERT INTO collection (collection_id, title, source)"
            " VALUES ('prostatex', 'x', 'ingest')"
        )
        with pytest.raises(ReferenceImportError, match="same id as IDC collections: prostatex"):
            import_idc(catalog.con)
        assert catalog.table_counts()["series"] == 0


def test_missing_index_file_is_named(tmp_path: Path) -> None:
    from dataclasses import replace

    broken = replace(INDEX, series_parquet=tmp_path / "gone.parquet")
    with (
        Catalog(tmp_path / "c.duckdb") as catalog,
        pytest.raises(ReferenceImportError, match=r"gone\.parquet"),
    ):
        import_idc(catalog.con, broken)


def test_split_list_keeps_nos_qualifiers_whole() -> None:
    assert split_list("Diffuse Large B-Cell Lymphoma, Not Otherwise Specified, Melanoma") == [
        "Diffuse Large B-Cell Lymphoma, Not Otherwise Specified",
        "Melanoma",
    ]
    assert split_list(None) == []
