"""WADO-RS instance look-up at catalogue scale: oncofed's ``locate`` vs the one-join query.

Every WADO-RS retrieval of a series or an instance first finds its instances in the catalog.
This builds a catalog of ``--series`` synthetic series (20 instances each, the first 1,000 with
479; rows inserted series by series, as ingest does) with oncofed's schema and indexes, then
times, in the same run and alternating:
- oncofed: ``dicomweb_common.locate`` (the series by key, then its instances by key);
- one join: ``instance JOIN series`` filtered on the series key, the query locate used before.
Goal: flat in the catalogue's size (milliseconds at tens of millions of instances).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _common import OUT, console, machine, print_table, timed

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.schema import surrogate_key
from oncofed.server.dicomweb_common import locate

BIG_SERIES = 1000
"""Series with 479 instances (the others have 20)."""
ONE_JOIN = (
    "SELECT ?, s.series_uid, i.sop_uid, i.sop_class, i.sha256, i.frames, i.size,"
    " s.collection_id FROM instance i JOIN series s ON s.series_key = i.series_key"
    " WHERE i.series_key = ?::UBIGINT AND s.series_key = ?::UBIGINT"
    " AND s.series_uid = ? AND s.study_key = ?::UBIGINT"
)


def build(catalog: Catalog, series: int) -> None:
    """Two series a study; instances inserted in chunks of whole series."""
    con = catalog.con
    con.execute(
        "INSERT INTO collection (collection_id, title, source)"
        " VALUES ('synthetic', 'bench', 'bench')"
    )
    con.execute(
        "INSERT INTO study (study_key, study_uid, patient_key, collection_id)"
        " SELECT md5_number_upper('2.25.7.' || s), '2.25.7.' || s,"
        " md5_number_upper('p' || s), 'synthetic' FROM range(?) t(s)",
        [series // 2],
    )
    con.execute(
        "INSERT INTO series (series_key, series_uid, study_key, patient_key, collection_id,"
        " modality, instance_count, bytes)"
        " SELECT md5_number_upper('2.25.9.' || i), '2.25.9.' || i,"
        " md5_number_upper('2.25.7.' || (i // 2)), md5_number_upper('p' || (i // 2)),"
        " 'synthetic', 'CT', CASE WHEN i < ? THEN 479 ELSE 20 END, 0 FROM range(?) t(i)",
        [BIG_SERIES, series],
    )
    chunk = 20_000
    for first in range(0, series, chunk):
        con.execute(
            "INSERT INTO instance (sop_uid, series_key, sop_class, sha256, size, frames)"
            " SELECT '2.25.8.' || i || '.' || j, md5_number_upper('2.25.9.' || i),"
            " '1.2.840.10008.5.1.4.1.1.2', sha256(i || '.' || j), 10000, 1"
            " FROM range(?, ?) t(i), range(479) u(j)"
            " WHERE j < CASE WHEN i < ? THEN 479 ELSE 20 END ORDER BY i, j",
            [first, min(first + chunk, series), BIG_SERIES],
        )
    con.execute("CHECKPOINT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000_000, help="series in the catalog")
    parser.add_argument("--picks", type=int, default=5, help="series timed of each size")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per series")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as folder, Catalog(f"{folder}/c.duckdb") as catalog:
        build(catalog, args.series)
        con = catalog.con
        instances = con.execute("SELECT count(*) FROM instance").fetchone()
        console.print(f"catalog: {args.series:,} series, {instances[0]:,} instances ({machine()})")
        rows = []
        for label, first in (("20 instances", BIG_SERIES + 7), ("479 instances", 0)):
            ours: list[float] = []
            join: list[float] = []
            for n in range(first, first + args.picks):
                study, series = f"2.25.7.{n // 2}", f"2.25.9.{n}"
                key, study_key = surrogate_key(series), surrogate_key(study)
                params = [study, key, key, series, study_key]
                expected = con.execute(ONE_JOIN, params).fetchall()
                assert locate(con, study, series) == sorted(expected, key=lambda r: r[2])
                for _ in range(args.repeats):  # alternate, so both see the same noise
                    ours += timed(lambda s=study, u=series: locate(con, s, u), 1)
                    join += timed(lambda p=params: con.execute(ONE_JOIN, p).fetchall(), 1)
            mine, theirs = statistics.median(ours), statistics.median(join)
            rows.append([label, mine, theirs, mine / theirs])
    print_table(
        "series look-up, median ms",
        ["series of", "oncofed locate", "one join", "oncofed / join"],
        rows,
    )


if __name__ == "__main__":
    main()
