"""Binary classification metrics of probabilities with confidence intervals.

AUROC with a DeLong (logit scale) or stratified-bootstrap percentile interval; AUPRC (average
precision) and the Brier score with stratified-bootstrap intervals from the same resamples;
sensitivity, specificity, PPV and NPV at stated operating points (a case is called positive at
``score >= threshold``) with Wilson intervals; ECE and the reliability curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oncofed.tef.metrics import delong
from oncofed.tef.metrics.bootstrap import percentile_interval, stratified_binary
from oncofed.tef.metrics.calibration import Calibration, calibration
from oncofed.tef.metrics.estimate import Estimate, proportion
from oncofed.tef.metrics.inputs import (
    MetricsError,
    binary_inputs,
    check_confidence,
    probabilities,
)
from oncofed.tef.metrics.ranked import Draws, RankedCases

CiMethod = Literal["delong", "bootstrap"]
_AT_OPERATING_POINT = ("sensitivity", "specificity", "ppv", "npv")
STRATIFIED = "bootstrap-stratified-percentile"


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates when cases with ``score >= threshold`` are called positive."""

    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate | None
    """None when no case is called positive."""
    npv: Estimate | None
    """None when no case is called negative."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        rates = {name: _optional(getattr(self, name)) for name in _AT_OPERATING_POINT}
        return {
            "threshold": self.threshold,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "true_negatives": self.true_negatives,
            "false_negatives": self.false_negatives,
            **rates,
        }


def _optional(estimate: Estimate | None) -> dict[str, Any] | None:
    return None if estimate is None else estimate.to_dict()


@dataclass(frozen=True)
class BinaryResult:
    """Everything :func:`evaluate_binary` measures; intervals at level ``1 - alpha``."""

    cases: int
    positives: int
    negatives: int
    alpha: float
    auroc: Estimate
    auprc: Estimate
    brier: Estimate
    calibration: Calibration
    operating_points: tuple[OperatingPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; ``sensitivity``, ``specificity``, ``ppv`` and ``npv`` at the top level are
        those of the first operating point (its threshold is ``operating_points[0]``)."""
        first = self.operating_points[0]
        return {
            "cases": self.cases,
            "positives": self.positives,
            "negatives": self.negatives,
            "ci_level": 1 - self.alpha,
            "auroc": self.auroc.to_dict(),
            "auprc": self.auprc.to_dict(),
            "brier": self.brier.to_dict(),
            "ece": {"value": self.calibration.ece, "bins": self.calibration.bins},
            "reliability": [b.to_dict() for b in self.calibration.curve],
            **{name: _optional(getattr(first, name)) for name in _AT_OPERATING_POINT},
            "operating_points": [p.to_dict() for p in self.operating_points],
        }


def operating_point(
    labels: NDArray[np.bool_], scores: NDArray[np.float64], threshold: float, alpha: float
) -> OperatingPoint:
    """Confusion counts and Wilson-interval rates at ``threshold``."""
    called = scores >= threshold
    tp = int(np.count_nonzero(called & labels))
    fp = int(np.count_nonzero(called & ~labels))
    positives = int(labels.sum())
    fn, tn = positives - tp, labels.size - positives - fp
    sensitivity, specificity = proportion(tp, tp + fn, alpha), proportion(tn, tn + fp, alpha)
    assert sensitivity is not None and specificity is not None  # both classes are present
    ppv, npv = proportion(tp, tp + fp, alpha), proportion(tn, tn + fn, alpha)
    return OperatingPoint(threshold, tp, fp, tn, fn, sensitivity, specificity, ppv, npv)


def evaluate(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    operating_points: Sequence[float],
    ci_method: CiMethod,
    n_bootstrap: int,
    alpha: float,
    seed: int,
) -> BinaryResult:
    """All binary metrics of probabilities ``score`` against 0/1 labels ``y_true``."""
    check_confidence(alpha, n_bootstrap)
    if ci_method not in ("delong", "bootstrap"):
        raise MetricsError(f"ci_method must be 'delong' or 'bootstrap', got {ci_method!r}")
    if not operating_points:
        raise MetricsError("at least one operating point is needed")
    labels, scores = binary_inputs(y_true, probabilities(score))
    thresholds = [float(t) for t in operating_points]
    if any(not 0 <= t <= 1 for t in thresholds):
        raise MetricsError(f"operating points must be thresholds in [0, 1], got {thresholds}")
    cases = RankedCases.of(labels, scores)
    everyone = cases.everyone()
    statistics: tuple[Callable[[Draws], float], ...] = (
        cases.average_precision,
        cases.brier,
        *((cases.auroc,) if ci_method == "bootstrap" else ()),
    )
    resampled = stratified_binary(cases, statistics, n_bootstrap, seed)
    estimates = [
        Estimate(statistic(everyone), percentile_interval(resampled[:, k], alpha), STRATIFIED)
        for k, statistic in enumerate(statistics)
    ]
    if ci_method == "delong":
        auc, var = delong.variance(labels, scores)
        estimates.append(Estimate(auc, delong.interval(auc, var, alpha), "delong-logit"))
    auprc, brier, auroc = estimates
    return BinaryResult(
        cases=labels.size,
        positives=int(labels.sum()),
        negatives=int((~labels).sum()),
        alpha=alpha,
        auroc=auroc,
        auprc=auprc,
        brier=brier,
        calibration=calibration(labels, scores),
        operating_points=tuple(operating_point(labels, scores, t, alpha) for t in thresholds),
    )


def bootstrap_auroc(
    y_true: ArrayLike, score: ArrayLike, *, n_bootstrap: int, alpha: float, seed: int
) -> Estimate:
    """AUROC of real-valued scores with a stratified bootstrap percentile interval only."""
    check_confidence(alpha, n_bootstrap)
    labels, scores = binary_inputs(y_true, score)
    cases = RankedCases.of(labels, scores)
    resampled = stratified_binary(cases, (cases.auroc,), n_bootstrap, seed)[:, 0]
    auc = cases.auroc(cases.everyone())
    return Estimate(auc, percentile_interval(resampled, alpha), STRATIFIED)
