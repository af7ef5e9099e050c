"""The `oncofed` command line, run as a real process: exit codes, JSON output, error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oncofed.testing.dicom import generate_cohort


def oncofed(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oncofed", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def node_with_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("cli")
    manifest = generate_cohort(root / "in", patients=4, seed=9)
    home = root / "node"
    assert oncofed("node", "init", home).returncode == 0
    done = oncofed("ingest", root / "in", "--node", home, "-c", "synth", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == manifest.instances and report["stage"].startswith("deid")
    return home, manifest.patients


def test_query_json_counts_and_facets(node_with_cohort: tuple[Path, int]) -> None:
    home, patients = node_with_cohort
    done = oncofed("query", "--node", home, "-w", "collection=synth", "--facets", "sex", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["counts"]["patients"] == patients
    assert sum(b["patients"] for b in answer["facets"]["sex"]) == patients
    assert answer["filter"] == {"collection": ["synth"]}


def test_query_table_output(node_with_cohort: tuple[Path, int]) -> None:
    home, _ = node_with_cohort
    done = oncofed("query", "--node", home, "-w", "modality=MR,CT", "--facets", "modality")
    assert done.returncode == 0
    assert "patients" in done.stdout and "by modality" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "colour=red"], "unknown field 'colour'; valid fields: collection, cancer_type"),
        (["-w", "age=70..50"], "empty range"),
        (["-w", "modality"], "expected FIELD=VALUE"),
        (["--facets", "shoe_size"], "unknown facet(s) ['shoe_size']; valid facets: collection"),
    ],
)
def test_bad_queries_exit_2_with_a_clear_message(
    node_with_cohort: tuple[Path, int], args: list[str], message: str
) -> None:
    home, _ = node_with_cohort
    done = oncofed("query", "--node", home, *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_not_a_node_is_explained(tmp_path: Path) -> None:
    done = oncofed("query", "--node", tmp_path)
    assert done.returncode == 2
    assert "is not an oncofed node" in done.stderr and "oncofed node init" in done.stderr


def test_node_info_json(node_with_cohort: tuple[Path, int]) -> None:
    home, _ = node_with_cohort
    done = oncofed("node", "info", home, "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["tables"]["patient"] == node_with_cohort[1]


def test_collections_listing(node_with_cohort: tuple[Path, int]) -> None:
    home, patients = node_with_cohort
    done = oncofed("catalog", "collections", "--node", home, "--json")
    (synth,) = json.loads(done.stdout)
    assert (synth["collection_id"], synth["patients"], synth["source"]) == (
        "synth",
        patients,
        "ingest",
    )


def test_wsi_ingest_command(tmp_path: Path) -> None:
    from oncofed.testing.wsi import make_slide

    slide = make_slide(tmp_path / "FAKE-SLIDE-9.svs", "svs", width=1024, height=768)
    home = tmp_path / "node"
    assert oncofed("node", "init", home).returncode == 0
    done = oncofed(
        "wsi", "ingest", slide.path, "-c", "biopsies", "-n", home,
        "--patient-id", "FAKE-0009", "--stain", "H&E", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1
    missing = oncofed("wsi", "ingest", slide.path, "-c", "biopsies", "-n", home)
    assert missing.returncode == 2 and "--patient-id" in missing.stderr


def test_identity_commands_are_audited(node_with_cohort: tuple[Path, int]) -> None:
    home, _ = node_with_cohort
    assert oncofed("users", "add", "carol", "--role", "researcher", "-n", home).returncode == 0
    issued = oncofed("tokens", "issue", "carol", "--days", "2", "-n", home)
    assert issued.returncode == 0 and issued.stdout.strip().splitlines()[-1].startswith("ofd_")
    assert oncofed("grants", "add", "carol", "synth", "--tier", "3", "-n", home).returncode == 0
    refused = oncofed("grants", "add", "carol", "nowhere", "-n", home)
    assert refused.returncode == 2 and "no collection 'nowhere'" in refused.stderr
    shown = json.loads(oncofed("audit", "show", "-n", home, "--json").stdout)
    assert [e["action"] for e in shown][-3:] == ["user.add", "token.issue", "grant.add"]
    assert "ofd_" not in json.dumps(shown)  # the token itself is never logged
    assert oncofed("audit", "verify", "-n", home).returncode == 0
