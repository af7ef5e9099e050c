"""The report's figures as inline SVG, drawn with matplotlib from released numbers only."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from oncofed.tef.metrics.estimate import proportion

_styled = matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "oncofed", "font.size": 9})
"""Text stays text (searchable, small); element ids are stable between runs."""


@dataclass(frozen=True)
class ForestRow:
    """One line of the forest plot: a value with its interval, or why there is none."""

    label: str
    value: float | None
    ci: tuple[float, float] | None
    note: str = ""


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or doctype


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


@_styled
def roc_curve(curves: Mapping[str, Mapping[str, Any]], alpha: float) -> str:
    """ROC curves of released histograms (``{label: aggregate dict}``), each threshold at a
    group edge, with a pointwise Wilson band for the sensitivity at each threshold."""
    figure = _figure(4.2, 4.0)
    axes = figure.add_subplot()
    for label, aggregate in curves.items():
        groups = sorted(aggregate["groups"], key=lambda g: g[0], reverse=True)
        positives, negatives = aggregate["positives"], aggregate["negatives"]
        tp = fp = 0
        fpr, tpr, low, high = [0.0], [0.0], [0.0], [0.0]
        for _, _, pos, neg in groups:
            tp, fp = tp + pos, fp + neg
            sensitivity = proportion(tp, positives, alpha)
            assert sensitivity is not None and sensitivity.ci is not None
            fpr.append(fp / negatives)
            tpr.append(sensitivity.value)
            low.append(sensitivity.ci[0])
            high.append(sensitivity.ci[1])
        (line,) = axes.step(fpr, tpr, where="post", label=label)
        axes.fill_between(fpr, low, high, step="post", alpha=0.2, color=line.get_color())
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
             title=f"ROC with {1 - alpha:.0%} pointwise band")  # fmt: skip
    axes.legend(loc="lower right")
    return _svg(figure)


@_styled
def reliability(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Reliability diagrams: observed share of positives against mean predicted probability
    per released bin, marker area by cases."""
    figure = _figure(4.2, 4.0)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8, label="perfect")
    for label, bins in curves.items():
        if bins:
            axes.plot([b["mean_score"] for b in bins], [b["observed"] for b in bins],
                      marker="o", label=label)  # fmt: skip
    axes.set(xlabel="mean predicted probability", ylabel="observed share of positives",
             xlim=(0, 1), ylim=(0, 1), title="Calibration")  # fmt: skip
    axes.legend(loc="upper left")
    return _svg(figure)


@_styled
def confusion(matrix: Sequence[Sequence[int | str]], classes: Sequence[str], title: str) -> str:
    """A confusion matrix (rows: reference, columns: predicted); suppressed cells print as
    released (``<k``) and are shaded as zero."""
    figure = _figure(1.2 + 0.55 * len(classes), 1.0 + 0.5 * len(classes))
    axes = figure.add_subplot()
    shade = [[cell if isinstance(cell, int) else 0 for cell in row] for row in matrix]
    axes.imshow(shade, cmap="Blues")
    peak = max((max(row) for row in shade), default=0)
    for i, row in enumerate(matrix):
        for j, cell in enumerate(row):
            dark = isinstance(cell, int) and cell > peak / 2
            axes.text(j, i, str(cell), ha="center", va="center",
                      color="white" if dark else "black")  # fmt: skip
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes)
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted", ylabel="reference", title=title)
    return _svg(figure)


@_styled
def forest(rows: Sequence[ForestRow], metric: str, level: float) -> str:
    """Per-site (and pooled) values of the primary metric with their intervals."""
    figure = _figure(6.0, 0.9 + 0.35 * len(rows))
    axes = figure.add_subplot()
    positions = list(range(len(rows)))[::-1]
    for y, row in zip(positions, rows, strict=True):
        if row.value is None:
            axes.text(0.5, y, row.note, ha="center", va="center", color="grey",
                      transform=axes.get_yaxis_transform())  # fmt: skip
            continue
        if row.ci is not None:
            axes.plot(row.ci, [y, y], color="black", linewidth=1.2)
        axes.plot([row.value], [y], marker="D" if row.note == "pooled" else "s", color="black")
    axes.set_yticks(positions, [row.label for row in rows])
    axes.set(xlabel=f"{metric} ({level:.0%} CI)", ylim=(-0.7, len(rows) - 0.3),
             title=f"{metric} per site")  # fmt: skip
    axes.grid(axis="x", linestyle=":", linewidth=0.6)
    return _svg(figure)
