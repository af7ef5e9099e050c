"""Cohort query speed on the full IDC import: oncofed vs plain DuckDB vs idc-index.

Peers, measured in the same run:
- plain DuckDB: hand-written SQL over oncofed's own ``series`` table (the floor for our schema);
- idc-index: ``IDCClient.sql_query`` over its bundled index (the tool IDC users use).
Goals (issue 3): oncofed median within 1.5x of plain DuckDB; query + 5 facets p95 under 150 ms;
at least 100x faster than idc-index.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, console, machine, percentile, print_table, timed

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.idc import import_idc

AGE = (
    "CASE WHEN regexp_full_match(PatientAge, '[0-9]{3}Y') THEN CAST(left(PatientAge, 3) AS INT) END"
)
# (oncofed filter, WHERE over oncofed's series table, WHERE over idc-index's `index` table)
QUERIES: list[tuple[dict[str, Any], str, str]] = [
    ({}, "TRUE", "TRUE"),
    ({"modality": ["MR"]}, "modality = 'MR'", "Modality = 'MR'"),
    ({"modality": ["MR", "CT"]}, "modality IN ('MR', 'CT')", "Modality IN ('MR', 'CT')"),
    ({"modality": ["SM"]}, "modality = 'SM'", "Modality = 'SM'"),
    ({"body_part": ["BREAST"]}, "body_part = 'BREAST'", "BodyPartExamined = 'BREAST'"),
    ({"sex": ["F"]}, "sex = 'F'", "PatientSex = 'F'"),
    ({"age": [50, 70]}, "age_years BETWEEN 50 AND 70", f"{AGE} BETWEEN 50 AND 70"),
    ({"collection": ["prostatex"]}, "collection_id = 'prostatex'", "collection_id = 'prostatex'"),
    (
        {"manufacturer": ["siemens"]},
        "lower(manufacturer) LIKE '%siemens%'",
        "lower(Manufacturer) LIKE '%siemens%'",
    ),
    (
        {"modality": ["CT"], "body_part": ["CHEST"]},
        "modality = 'CT' AND body_part = 'CHEST'",
        "Modality = 'CT' AND BodyPartExamined = 'CHEST'",
    ),
    (
        {"modality": ["MR"], "sex": ["M"], "age": [60, None]},
        "modality = 'MR' AND sex = 'M' AND age_years >= 60",
        f"Modality = 'MR' AND PatientSex = 'M' AND {AGE} >= 60",
    ),
    (
        {"cancer_type": ["Prostate"]},
        "collection_id IN (SELECT collection_id FROM collection, unnest(cancer_types) t(c)"
        " WHERE lower(c) LIKE '%prostate%')",
        "collection_id IN (SELECT collection_id FROM collections_index"
        " WHERE lower(cancer_types) LIKE '%prostate%')",
    ),
    (
        {"cancer_type": ["Breast"], "modality": ["MG"]},
        "modality = 'MG' AND collection_id IN (SELECT collection_id FROM collection,"
        " unnest(cancer_types) t(c) WHERE lower(c) LIKE '%breast%')",
        "Modality = 'MG' AND collection_id IN (SELECT collection_id FROM collections_index"
        " WHERE lower(cancer_types) LIKE '%breast%')",
    ),
    (
        {"cancer_type": ["Lung"], "modality": ["CT"], "sex": ["F"]},
        "modality = 'CT' AND sex = 'F' AND collection_id IN (SELECT collection_id FROM collection,"
        " unnest(cancer_types) t(c) WHERE lower(c) LIKE '%lung%')",
        "Modality = 'CT' AND PatientSex = 'F' AND collection_id IN (SELECT collection_id FROM"
        " collections_index WHERE lower(cancer_types) LIKE '%lung%')",
    ),
    (
        {"collection": ["tcga_brca", "tcga_luad", "tcga_prad"]},
        "collection_id IN ('tcga_brca', 'tcga_luad', 'tcga_prad')",
        "collection_id IN ('tcga_brca', 'tcga_luad', 'tcga_prad')",
    ),
    (
        {"model": ["aquilion"]},
        "lower(model) LIKE '%aquilion%'",
        "lower(ManufacturerModelName) LIKE '%aquilion%'",
    ),
    (
        {"modality": ["PT", "CT"], "age": [40, 80], "sex": ["M", "F"]},
        "modality IN ('PT', 'CT') AND age_years BETWEEN 40 AND 80 AND sex IN ('M', 'F')",
        f"Modality IN ('PT', 'CT') AND {AGE} BETWEEN 40 AND 80 AND PatientSex IN ('M', 'F')",
    ),
    (
        {"body_part": ["PROSTATE"], "modality": ["MR"], "manufacturer": ["siemens"]},
        "body_part = 'PROSTATE' AND modality = 'MR' AND lower(manufacturer) LIKE '%siemens%'",
        "BodyPartExamined = 'PROSTATE' AND Modality = 'MR'"
        " AND lower(Manufacturer) LIKE '%siemens%'",
    ),
    (
        {"sop_class": ["1.2.840.10008.5.1.4.1.1.77.1.6"]},
        "sop_class = '1.2.840.10008.5.1.4.1.1.77.1.6'",
        "SOPClassUID = '1.2.840.10008.5.1.4.1.1.77.1.6'",
    ),
    ({"collection": ["no_such"]}, "collection_id = 'no_such'", "collection_id = 'no_such'"),
]
FACETS = ("modality", "collection", "body_part", "sex", "manufacturer")


def plain_sql(where: str) -> str:
    return (
        "SELECT count(DISTINCT patient_key), count(DISTINCT study_key), count(*),"
        f" sum(instance_count), sum(bytes) FROM series WHERE {where}"
    )


def idc_sql(where: str) -> str:
    return (
        "SELECT count(DISTINCT PatientID), count(DISTINCT StudyInstanceUID), count(*),"
        f" sum(instanceCount), sum(series_size_MB) FROM index WHERE {where}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per query")
    parser.add_argument(
        "--idc-index-queries",
        type=int,
        default=len(QUERIES),
        help="how many queries to time with idc-index (each takes seconds)",
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / "idc-catalog.duckdb"
    with Catalog(path) as catalog:
        imported = import_idc(catalog.con)
        console.print(f"IDC {imported.version}: {imported.series:,} series ({machine()})")
        rows, ours, plain, with_facets = [], [], [], []
        for where, plain_where, _ in QUERIES:
            catalog.query(where)  # warm
            a = timed(lambda w=where: catalog.query(w), args.repeats)
            sql = plain_sql(plain_where)
            b = timed(lambda s=sql: catalog.con.execute(s).fetchall(), args.repeats)
            c = timed(lambda w=where: catalog.query(w, FACETS), args.repeats)
            ours += a
            plain += b
            with_facets += c
            rows.append([str(where)[:60], percentile(a, 50), percentile(b, 50), percentile(c, 50)])
        print_table("per query, median ms", ["query", "oncofed", "plain DuckDB", "+5 facets"], rows)

    import idc_index

    client = idc_index.IDCClient()
    client.fetch_index("collections_index")  # shipped in idc-index-data: loaded from disk
    idc_times = []
    for _, _, idc_where in QUERIES[: args.idc_index_queries]:
        idc_times += timed(lambda w=idc_where: client.sql_query(idc_sql(w)), 1)

    summary = [
        ["oncofed Catalog.query", percentile(ours, 50), percentile(ours, 95), 1.0],
        [
            "plain DuckDB, same tables",
            percentile(plain, 50),
            percentile(plain, 95),
            percentile(ours, 50) / percentile(plain, 50),
        ],
        [
            "oncofed query + 5 facets",
            percentile(with_facets, 50),
            percentile(with_facets, 95),
            percentile(with_facets, 50) / percentile(plain, 50),
        ],
        [
            "idc-index IDCClient.sql_query",
            percentile(idc_times, 50),
            percentile(idc_times, 95),
            percentile(ours, 50) / percentile(idc_times, 50),
        ],
    ]
    print_table(
        f"cohort queries over {len(QUERIES)} filters ({machine()})",
        ["engine", "p50 ms", "p95 ms", "oncofed p50 / this p50"],
        summary,
    )
    speedup = percentile(idc_times, 50) / percentile(ours, 50)
    console.print(
        f"oncofed vs plain DuckDB median ratio: {percentile(ours, 50) / percentile(plain, 50):.2f}x"
        f" (goal <= 1.5x); query+5 facets p95 {percentile(with_facets, 95):.1f} ms (goal < 150);"
        f" {speedup:,.0f}x faster than idc-index (goal >= 100x)"
    )


if __name__ == "__main__":
    main()
