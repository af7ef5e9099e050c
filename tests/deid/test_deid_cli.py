"""``oncofed deid IN OUT``: the standalone run, its output layout and its report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
from typer.testing import CliRunner

from oncofed.deid.cli import app
from oncofed.deid.corpus import generate_corpus, write_bad_inputs


def test_cli_run_writes_outputs_and_a_report(tmp_path: Path) -> None:
    source = tmp_path / "in"
    corpus = generate_corpus(source, patients=2, seed=3, images=2)
    write_bad_inputs(source / "bad")
    out = tmp_path / "out"
    args = [
        "deid",
        str(source),
        str(out),
        "--option",
        "retain-dates",
        "--option",
        "clean-pixel-data",
        "--option",
        "clean-descriptors",
        "--node-dir",
        str(tmp_path / "node"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == len(corpus.files) == 2 * 2 * 5
    for path in written:
        assert "FAKE" not in str(path.relative_to(out))
        assert path.name[:-4] == pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    assert not list(out.rglob("*.tmp"))
    report = json.loads((tmp_path / "out.deid-report.json").read_text())
    assert report["files_processed"] == len(corpus.files) + 9
    assert report["files_written"] == len(corpus.files)
    assert report["files_quarantined"] == 9
    assert {Path(q["source"]).name for q in report["quarantined"]} >= {"garbage.dcm", "deep.dcm"}
    actions = report["actions_by_tag"]
    assert actions["(0010,0010) PatientName"] == {"emptied": len(corpus.files)}
    assert actions["(0008,0020) StudyDate"] == {"cleaned": len(corpus.files)}
    assert actions["(0008,0018) SOPInstanceUID"] == {"uid-replaced": len(corpus.files)}
    assert actions["private attributes"]["removed"] == 5 * len(corpus.files)
    assert report["files_with_pixels_cleaned"] == 2 * 2 * 2
    assert "quarantined" in result.output


def test_cli_is_repeatable_and_parallel_with_the_same_key(tmp_path: Path) -> None:
    source = tmp_path / "in"
    generate_corpus(source, patients=1, seed=4, images=2)
    runner = CliRunner()
    node = ["--node-dir", str(tmp_path / "node")]
    assert runner.invoke(app, ["deid", str(source), str(tmp_path / "a"), *node]).exit_code == 0
    second = ["deid", str(source), str(tmp_path / "b"), *node, "--workers", "2"]
    assert runner.invoke(app, second).exit_code == 0
    first = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    again = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dcm"))
    assert first == again and first
    shutil.rmtree(tmp_path / "node")
    assert runner.invoke(app, ["deid", str(source), str(tmp_path / "c"), *node]).exit_code == 0
    assert not set(first) & {p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.dcm")}


def test_cli_reports_bad_options_without_traceback(tmp_path: Path) -> None:
    args = ["deid", str(tmp_path), str(tmp_path / "out"), "--option", "nope"]
    result = CliRunner().invoke(app, [*args, "--node-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown de-identification option 'nope'" in result.output
