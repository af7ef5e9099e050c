"""IDC import: time and peak memory, vs plain DuckDB loading the same parquet.

Goal (issue 3): the import of the ~1M-series IDC index under 60 s and under 4 GiB. Each run is a
fresh subprocess, so peak memory (max RSS) is that run's alone. The peer copies the same parquet
into a fresh DuckDB file with one CREATE TABLE AS, the floor for any import.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, console, machine, print_table

from oncofed.catalog.idc import bundled_index

OURS = """
import sys
from oncofed.catalog.catalog import Catalog
from oncofed.catalog.idc import import_idc
with Catalog(sys.argv[1]) as catalog:
    import_idc(catalog.con, force=sys.argv[2] == "force")
"""
PEER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE OR REPLACE TABLE idc AS SELECT * FROM read_parquet(?)", [sys.argv[2]])
con.close()
"""


def run(code: str, *args: str) -> tuple[float, float]:
    """Seconds and peak RSS (GiB) of ``python -c code args`` in a fresh process."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"benchmark run failed: {code.strip().splitlines()[-1]}")
    return seconds, usage.ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    index = bundled_index()
    OUT.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        catalog = str(Path(folder) / "catalog.duckdb")
        peer_db = str(Path(folder) / "peer.duckdb")
        measured = {
            "plain DuckDB: CREATE TABLE AS read_parquet": run(
                PEER, peer_db, str(index.series_parquet)
            ),
            "oncofed import-idc, fresh catalog": run(OURS, catalog, "first"),
            "oncofed import-idc, same version again (no-op)": run(OURS, catalog, "again"),
            "oncofed import-idc --force (replace all IDC rows)": run(OURS, catalog, "force"),
        }
    floor = measured["plain DuckDB: CREATE TABLE AS read_parquet"][0]
    for label, (seconds, gib) in measured.items():
        rows.append([label, seconds, gib, seconds / floor])
    print_table(
        f"IDC {index.version} import ({machine()})",
        ["run", "seconds", "peak RSS GiB", "x plain DuckDB"],
        rows,
    )
    seconds, gib = measured["oncofed import-idc, fresh catalog"]
    console.print(
        f"goal: < 60 s and < 4 GiB: {seconds:.1f} s, {gib:.2f} GiB "
        f"({'met' if seconds < 60 and gib < 4 else 'not met'})"
    )


if __name__ == "__main__":
    main()
