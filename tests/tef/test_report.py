"""Run reports (HTML with figures, PDF via headless Chromium) and leaderboards."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit

from oncofed.disclosure import DisclosurePolicy
from oncofed.tef.metrics import (
    BinaryAggregate,
    OrdinalAggregate,
    binary_aggregate,
    evaluate_binary,
    evaluate_ordinal,
    ordinal_aggregate,
    pool_binary,
    pool_ordinal,
)
from oncofed.tef.release import release_evaluation
from oncofed.tef.report import (
    LeaderboardEntry,
    ReportError,
    export_pdf,
    render_leaderboard,
    render_report,
    report_input,
)
from oncofed.tef.report.model import BenchmarkRef
from oncofed.tef.report.pdf import find_chromium

POLICY = DisclosurePolicy(min_count=10, rounding=5)
BENCHMARK = {"id": "breast-mg-lesion", "version": "1.0", "sha256": "ab" * 32}
ALGORITHM = {"name": "lesion-lr", "version": "0.3", "kind": "onnx", "sha256": "cd" * 32}


def node_result(name: str, seed: int, task: str = "binary") -> dict[str, Any]:
    """A released node result of seeded fake cases, as evaluate_at_node returns it."""
    rng = np.random.default_rng(seed)
    cases = 240
    if task == "binary":
        truth = rng.integers(0, 2, cases)
        scores = expit(rng.normal(0, 1, cases) + 1.6 * truth)
        measured = evaluate_binary(truth, scores, n_bootstrap=200).to_dict()
        aggregate = binary_aggregate(truth, scores).to_dict()
        classes, primary = ["0", "1"], "auroc"
    else:
        truth = rng.integers(0, 6, cases)
        predicted = np.clip(truth + rng.integers(-1, 2, cases), 0, 5)
        measured = evaluate_ordinal(truth, predicted, n_classes=6, n_bootstrap=200).to_dict()
        aggregate = ordinal_aggregate(truth, predicted, n_classes=6).to_dict()
        classes, primary = [str(c) for c in range(6)], "quadratic_kappa"
    result = {
        "run_id": f"20260101T000000Z-{name}", "node": name, "status": "completed",
        "benchmark": BENCHMARK, "algorithm": ALGORITHM, "task": task, "primary_metric": primary,
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:05:00+00:00",
        "predictions": {"stored_at_node": "tef/predictions/x.parquet", "cases": cases},
        "data": {"cases": cases, "excluded": {"no reference label": 3},
                 "per_class": {c: int((truth == i).sum()) for i, c in enumerate(classes)}},
        "metrics": {"cases": cases, **measured},
        "subgroups": {"site": {f"{name}-mg": {"cases": cases, **measured}}},
        "aggregate": aggregate,
    }  # fmt: skip
    return release_evaluation(result, POLICY)


@pytest.fixture(scope="module")
def binary_html() -> tuple[str, dict[str, Any]]:
    nodes = [node_result("hospital-a", 1), node_result("hospital-b", 2)]
    pooled = pool_binary([BinaryAggregate.from_dict(n["aggregate"]) for n in nodes],
                         n_bootstrap=200).to_dict()  # fmt: skip
    return render_report(report_input(nodes, pooled, synthetic=True)), pooled


def test_binary_report_shows_figures_values_hashes_and_bound(
    binary_html: tuple[str, dict[str, Any]],
) -> None:
    html, pooled = binary_html
    assert html.count("<svg") == 5  # ROC, calibration, two confusion matrices, forest plot
    for caption in (
        "ROC curve",
        "Calibration",
        "Confusion matrix, hospital-a",
        "Per-site forest plot",
    ):
        assert f"<figcaption>{caption}</figcaption>" in html
    assert "SYNTHETIC DATA" in html
    assert BENCHMARK["sha256"] in html and ALGORITHM["sha256"] in html
    assert "lesion-lr 0.3 on breast-mg-lesion 1.0" in html
    assert f"±{pooled['bound']:.4f}" in html
    assert f"[{pooled['auroc_low']:.4f}, {pooled['auroc_high']:.4f}]" in html
    node_auroc = node_result("hospital-a", 1)["metrics"]["auroc"]
    assert f"{node_auroc['value']:.3f} ({node_auroc['ci'][0]:.3f}" in html
    assert "hospital-a \N{MIDDLE DOT} hospital-a-mg" in html  # forest plot row, text kept as text
    assert "no reference label: &lt;10" in html  # protected counts, escaped


def test_ordinal_report_has_pooled_confusion_matrix() -> None:
    nodes = [node_result("lab-1", 3, "ordinal"), node_result("lab-2", 4, "ordinal")]
    pooled = pool_ordinal([OrdinalAggregate.from_dict(n["aggregate"]) for n in nodes],
                          n_bootstrap=200).to_dict()  # fmt: skip
    html = render_report(report_input(nodes, pooled, title="ISUP grading"))
    assert "<figcaption>Confusion matrix, pooled</figcaption>" in html
    assert "pooling error bound 0" in html and "SYNTHETIC" not in html
    kappa = pooled["quadratic_kappa"]
    assert f"quadratic_kappa {kappa['value']:.3f} ({kappa['ci'][0]:.3f}" in html


def test_mismatched_or_failed_runs_are_refused() -> None:
    node = node_result("hospital-a", 1)
    other = {**node_result("hospital-b", 2), "algorithm": {**ALGORITHM, "version": "0.4"}}
    with pytest.raises(ReportError, match="'hospital-b' ran a different algorithm"):
        report_input([node, other])
    with pytest.raises(ReportError, match="did not complete: 'failed'"):
        report_input([{**node, "status": "failed"}])
    with pytest.raises(ReportError, match="at least one node result"):
        report_input([])


def test_leaderboard_ranks_best_first() -> None:
    bench = BenchmarkRef(id="b", version="1", sha256="ef" * 32)
    entries = [
        LeaderboardEntry(algorithm=name, version="1", sha256=name * 8, value=value,
                         ci=[value - 0.05, value + 0.05], nodes=3, cases=1200, date="2026-01-02")
        for name, value in (("alpha", 0.71), ("beta", 0.88), ("gamma", 0.80))
    ]  # fmt: skip
    html = render_leaderboard(bench, "auroc", entries)
    assert [m for m in re.findall(r"(alpha|beta|gamma)</td>", html)] == ["beta", "gamma", "alpha"]
    assert "0.880 (0.830\N{EN DASH}0.930)" in html
    brier = render_leaderboard(bench, "brier", entries)
    assert re.findall(r"(alpha|beta|gamma)</td>", brier)[0] == "alpha"
    assert "No results yet." in render_leaderboard(bench, "auroc", [])


def test_missing_chromium_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReportError, match="install the Debian package 'chromium'"):
        find_chromium()
    earlier = tmp_path / "r.pdf"
    earlier.write_bytes(b"%PDF-1.4 an earlier report")
    with pytest.raises(ReportError, match="could not be started"):
        export_pdf("<p>x</p>", earlier, chromium=str(tmp_path / "no-chromium"))
    assert earlier.read_bytes() == b"%PDF-1.4 an earlier report"  # nothing lost


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian package chromium absent")
def test_pdf_export_writes_a_real_pdf(
    binary_html: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    written = export_pdf(binary_html[0], tmp_path / "report.pdf")
    data = written.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert 2 <= pages <= 8, pages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]
