"""`oncofed demo` end to end (small cohort, serving for a moment), as `make demo` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_builds_queries_and_serves(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    args = [sys.executable, "-m", "oncofed", "demo", str(home), "--patients", "6"]
    wide = {**os.environ, "COLUMNS": "250"}  # rich wraps at 80 columns off a terminal
    done = subprocess.run(
        [*args, "--serve-for", "0.5"], capture_output=True, text=True, timeout=900, env=wide
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "179 collections" in out and "de-identified on ingest" in out
    assert "nothing new" in out and "label and macro images removed" in out
    assert "exact (steward)" in out and "disclosure-controlled" in out
    assert "/dicomweb/studies" in out and "/viewer" in out
    assert "4 nodes joined" in out and "4 answered" in out  # the federation step
    assert "state granted" in out and "refused with HTTP 403" in out
    facility = out[out.index("evaluation facility") :]  # the site-shift study through the hub
    assert "prostate-plain" in facility and "prostate-macenko" in facility
    assert "no result" not in facility and facility.count("report: ") == 2
    assert "leaderboard of prostate-isup-sites@1" in facility
    again = subprocess.run(
        [*args, "--no-serve"], capture_output=True, text=True, timeout=900, env=wide
    )
    assert again.returncode == 0, again.stderr
    assert "(already imported)" in again.stdout
    assert "4 answered" in again.stdout and "no result" not in again.stdout  # the hub moved
