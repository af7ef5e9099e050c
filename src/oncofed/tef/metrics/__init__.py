"""Evaluation metrics with confidence intervals, aggregates for pooling, pooled metrics.

The public facade the node-side evaluator and the hub call; the formulas live in the modules.
Every result is a frozen dataclass with a JSON-safe ``to_dict()``; aggregates also parse with
``from_dict()``. Bad input raises :class:`MetricsError` naming the input and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from numpy.typing import ArrayLike

from oncofed.tef.metrics import binary, delong, ordinal
from oncofed.tef.metrics.binary import BinaryResult, OperatingPoint
from oncofed.tef.metrics.calibration import Calibration, ReliabilityBin
from oncofed.tef.metrics.delong import DelongComparison
from oncofed.tef.metrics.estimate import Estimate
from oncofed.tef.metrics.inputs import MetricsError, binary_inputs
from oncofed.tef.metrics.ordinal import OrdinalResult
from oncofed.tef.metrics.pooling import (
    BinaryAggregate,
    OrdinalAggregate,
    PooledBinary,
    PooledOrdinal,
    binary_aggregate,
    ordinal_aggregate,
    pool_binary,
    pool_ordinal,
)

__all__ = [
    "BinaryAggregate",
    "BinaryResult",
    "Calibration",
    "DelongComparison",
    "Estimate",
    "MetricsError",
    "OperatingPoint",
    "OrdinalAggregate",
    "OrdinalResult",
    "PooledBinary",
    "PooledOrdinal",
    "ReliabilityBin",
    "binary_aggregate",
    "compare_binary",
    "evaluate_binary",
    "evaluate_ordinal",
    "ordinal_aggregate",
    "pool_binary",
    "pool_ordinal",
]


def evaluate_binary(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    operating_points: Sequence[float] = (0.5,),
    ci_method: Literal["delong", "bootstrap"] = "delong",
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BinaryResult:
    """AUROC (DeLong or bootstrap CI), AUPRC, Brier, ECE and rates at the operating points."""
    return binary.evaluate(y_true, score, operating_points=operating_points,
                           ci_method=ci_method, n_bootstrap=n_bootstrap, alpha=alpha,
                           seed=seed)  # fmt: skip


def evaluate_ordinal(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    n_classes: int,
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> OrdinalResult:
    """Quadratically weighted kappa (bootstrap CI), accuracy (Wilson CI), confusion matrix."""
    return ordinal.evaluate(y_true, y_pred, n_classes=n_classes, n_bootstrap=n_bootstrap,
                            alpha=alpha, seed=seed)  # fmt: skip


def compare_binary(
    y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, *, alpha: float = 0.05
) -> DelongComparison:
    """Paired DeLong test of two algorithms' AUROCs on the same cases."""
    labels, scores_a = binary_inputs(y_true, score_a, name="score_a")
    _, scores_b = binary_inputs(y_true, score_b, name="score_b")
    if not 0 < alpha < 0.5:
        raise MetricsError(f"alpha must lie in (0, 0.5), got {alpha}")
    return delong.compare(labels, scores_a, scores_b, alpha)
