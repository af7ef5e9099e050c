"""Render a run report and a benchmark leaderboard as self-contained HTML (Jinja2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from oncofed.tef.report import figures
from oncofed.tef.report.model import BenchmarkRef, LeaderboardEntry, ReportError, ReportInput

LOWER_IS_BETTER = frozenset({"brier", "ece"})
_BINARY_ROWS = ("auroc", "auprc", "brier", "sensitivity", "specificity", "ppv", "npv")
_ORDINAL_ROWS = ("quadratic_kappa", "accuracy")
_AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "npv")

_environment = Environment(
    loader=PackageLoader("oncofed.tef.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def estimate_text(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.812 (0.774-0.851)`` (with an en dash), or a dash when the metric is undefined."""
    if not entry:
        return "\N{EN DASH}"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci"):
        low, high = entry["ci"]
        text += f" ({low:.{digits}f}\N{EN DASH}{high:.{digits}f})"
    return text


def _metric_rows(entry: Mapping[str, Any], task: str) -> list[tuple[str, str]]:
    if "withheld" in entry:
        return [("withheld", str(entry["withheld"]))]
    rows = [(name, estimate_text(entry.get(name))) for name in
            (_BINARY_ROWS if task == "binary" else _ORDINAL_ROWS)]  # fmt: skip
    if task == "binary":
        threshold = entry["operating_points"][0]["threshold"]
        at = f" at score \N{GREATER-THAN OR EQUAL TO} {threshold}"
        rows = [(n + at if n in _AT_THRESHOLD else n, v) for n, v in rows]
        rows.append(
            (f"ece ({entry['ece']['bins']} equal-width bins)", f"{entry['ece']['value']:.3f}")
        )
    return rows


def _forest_rows(data: ReportInput) -> list[figures.ForestRow]:
    metric = data["primary_metric"]
    rows = []
    for node in data["nodes"]:
        groups = [(f"{node['node']} (all)", node["metrics"])]
        groups += [(f"{node['node']} \N{MIDDLE DOT} {value}", entry)
                   for value, entry in node["subgroups"].get("site", {}).items()]  # fmt: skip
        for label, entry in groups:
            estimate = entry.get(metric)
            if isinstance(estimate, Mapping):
                ci = tuple(estimate["ci"]) if estimate["ci"] else None
                rows.append(figures.ForestRow(label, estimate["value"], ci))
            else:
                rows.append(figures.ForestRow(label, None, None, entry.get("withheld", "n/a")))
    pooled = data["pooled"]
    if pooled is not None and isinstance(pooled.get(metric), Mapping):
        estimate = pooled[metric]
        rows.append(figures.ForestRow("pooled", estimate["value"], tuple(estimate["ci"]), "pooled"))
    return rows


def _figures(data: ReportInput, level: float) -> dict[str, Markup]:
    alpha = 1 - level
    nodes = data["nodes"]
    shown: dict[str, Markup] = {}
    classes = list(nodes[0]["data"]["per_class"])
    if data["task"] == "binary":
        histograms = {n["node"]: n["aggregate"] for n in nodes if "groups" in n["aggregate"]}
        if histograms:
            shown["ROC curve"] = Markup(figures.roc_curve(histograms, alpha))
        curves = {n["node"]: n["metrics"].get("reliability", []) for n in nodes}
        shown["Calibration"] = Markup(figures.reliability(curves))
        for node in nodes:
            if "withheld" not in node["metrics"]:
                point = node["metrics"]["operating_points"][0]
                matrix = [[point["true_negatives"], point["false_positives"]],
                          [point["false_negatives"], point["true_positives"]]]  # fmt: skip
                title = f"{node['node']} at score \N{GREATER-THAN OR EQUAL TO} {point['threshold']}"
                shown[f"Confusion matrix, {node['node']}"] = Markup(
                    figures.confusion(matrix, classes, title)
                )
    else:
        pooled = data["pooled"]
        if pooled is not None:
            shown["Confusion matrix, pooled"] = Markup(
                figures.confusion(pooled["confusion_matrix"], classes, "all nodes")
            )
        for node in nodes:
            if "confusion_matrix" in node["metrics"]:
                shown[f"Confusion matrix, {node['node']}"] = Markup(
                    figures.confusion(node["metrics"]["confusion_matrix"], classes, node["node"])
                )
    rows = _forest_rows(data)
    if any(row.value is not None for row in rows):
        shown["Per-site forest plot"] = Markup(figures.forest(rows, data["primary_metric"], level))
    return shown


def render_report(data: ReportInput) -> str:
    """The run report: identity and hashes, data summary, metrics, pooling bound, figures."""
    if not data["nodes"]:
        raise ReportError("a report needs at least one node result")
    level = float(data["nodes"][0]["metrics"].get("ci_level", 0.95))
    pooled = data["pooled"].get(data["primary_metric"]) if data["pooled"] else None
    return _environment.get_template("report.html.j2").render(
        data=data,
        level=level,
        metric_rows={n["node"]: _metric_rows(n["metrics"], data["task"]) for n in data["nodes"]},
        pooled_text=estimate_text(pooled),
        figures=_figures(data, level),
    )


def render_leaderboard(
    benchmark: BenchmarkRef, metric: str, entries: Sequence[LeaderboardEntry]
) -> str:
    """A benchmark's leaderboard, best first (highest, or lowest for Brier and ECE)."""
    ranked = sorted(entries, key=lambda e: e["value"], reverse=metric not in LOWER_IS_BETTER)
    return _environment.get_template("leaderboard.html.j2").render(
        benchmark=benchmark,
        metric=metric,
        rows=[{**e, "text": estimate_text({"value": e["value"], "ci": e["ci"]})} for e in ranked],
    )
