"""Ordinal and multi-class metrics: quadratically weighted kappa, accuracy, confusion matrix.

Quadratically weighted kappa (Cohen 1968), the agreement measure of Gleason/ISUP grading
challenges: ``1 - sum(W * O) / sum(W * E)`` with ``W[i, j] = (i - j)^2 / (C - 1)^2``, ``O`` the
observed confusion matrix and ``E`` the one expected by chance from its margins. Class distances
are those of the class indices, whether or not every class occurs. Its interval is the case
bootstrap (percentile), which for a statistic of the confusion matrix is a multinomial draw of
the matrix; accuracy gets a Wilson interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oncofed.tef.metrics.bootstrap import multinomial_counts, percentile_interval
from oncofed.tef.metrics.estimate import Estimate, proportion
from oncofed.tef.metrics.inputs import MetricsError, check_confidence, ordinal_inputs


@dataclass(frozen=True)
class OrdinalResult:
    """Everything :func:`evaluate_ordinal` measures; rows of the matrix are true classes."""

    cases: int
    n_classes: int
    alpha: float
    quadratic_kappa: Estimate
    accuracy: Estimate
    confusion_matrix: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {
            "cases": self.cases,
            "n_classes": self.n_classes,
            "ci_level": 1 - self.alpha,
            "quadratic_kappa": self.quadratic_kappa.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }


def confusion_matrix(
    truth: NDArray[np.int64], predicted: NDArray[np.int64], n_classes: int
) -> NDArray[np.int64]:
    """Counts of (true class, predicted class)."""
    cells = np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def quadratic_kappa(matrices: NDArray[np.int64] | NDArray[np.float64]) -> NDArray[np.float64]:
    """Kappa of confusion matrices shaped ``(..., C, C)``; NaN where chance agreement is total
    (every case and prediction in one class)."""
    n_classes = matrices.shape[-1]
    index = np.arange(n_classes)
    weights = (index[:, None] - index[None, :]) ** 2 / (n_classes - 1) ** 2
    observed = matrices.astype(np.float64)
    total = observed.sum(axis=(-2, -1))
    expected = observed.sum(axis=-1)[..., :, None] * observed.sum(axis=-2)[..., None, :]
    expected_disagreement = (weights * expected).sum(axis=(-2, -1)) / total
    observed_disagreement = (weights * observed).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - observed_disagreement / expected_disagreement
    return np.where(expected_disagreement > 0, kappa, np.nan)


def from_matrix(
    matrix: NDArray[np.int64], n_bootstrap: int, alpha: float, seed: int
) -> OrdinalResult:
    """All ordinal metrics of one confusion matrix (used by :func:`evaluate` and by pooling)."""
    check_confidence(alpha, n_bootstrap)
    kappa = float(quadratic_kappa(matrix))
    if np.isnan(kappa):
        raise MetricsError("quadratic kappa is undefined: every case and prediction is one class")
    n_classes = matrix.shape[0]
    resampled = np.concatenate([
        quadratic_kappa(cells.reshape(-1, n_classes, n_classes))
        for cells in multinomial_counts(matrix, n_bootstrap, seed)
    ])  # fmt: skip
    cases = int(matrix.sum())
    accuracy = proportion(int(np.trace(matrix)), cases, alpha)
    assert accuracy is not None  # cases > 0
    return OrdinalResult(
        cases=cases,
        n_classes=n_classes,
        alpha=alpha,
        quadratic_kappa=Estimate(
            kappa, percentile_interval(resampled, alpha), "bootstrap-percentile"
        ),
        accuracy=accuracy,
        confusion_matrix=tuple(tuple(int(c) for c in row) for row in matrix),
    )


def evaluate(
    y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int, n_bootstrap: int, alpha: float,
    seed: int,
) -> OrdinalResult:  # fmt: skip
    """All ordinal metrics of predicted class indices ``y_pred`` against ``y_true``."""
    truth, predicted = ordinal_inputs(y_true, y_pred, n_classes)
    return from_matrix(confusion_matrix(truth, predicted, n_classes), n_bootstrap, alpha, seed)
