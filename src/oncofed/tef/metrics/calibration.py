"""Calibration: expected calibration error and the reliability curve it is read from.

Binning (stated, as ECE depends on it): :data:`ECE_BINS` equal-width bins on [0, 1], right-closed
(``(k/10, (k+1)/10]``, the first also holding 0), the same bins scikit-learn's
``calibration_curve(strategy="uniform")`` uses. ECE (Naeini, Cooper & Hauskrecht 2015) is the
case-weighted mean, over non-empty bins, of ``|observed share of positives - mean predicted
probability|``. The Brier score (Brier 1950) lives in :mod:`.ranked` with the other count
formulas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

ECE_BINS = 10


def uniform_bins(scores: NDArray[np.float64], bins: int) -> NDArray[np.intp]:
    """Index of each score's bin among ``bins`` equal-width right-closed bins of [0, 1]."""
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.searchsorted(inner_edges, scores, side="left")


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability curve."""

    lower: float
    upper: float
    cases: int
    mean_score: float
    observed: float
    """Share of positives among the bin's cases."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """ECE with its binning, and the non-empty bins of the reliability curve."""

    ece: float
    bins: int
    curve: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {"ece": self.ece, "bins": self.bins, "curve": [b.to_dict() for b in self.curve]}


def calibration(
    labels: NDArray[np.bool_], scores: NDArray[np.float64], bins: int = ECE_BINS
) -> Calibration:
    """ECE and reliability curve of probabilities ``scores`` for outcomes ``labels``."""
    index = uniform_bins(scores, bins)
    cases = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=scores, minlength=bins)
    positive_sums = np.bincount(index, weights=labels.astype(np.float64), minlength=bins)
    filled = cases > 0
    mean_score = score_sums[filled] / cases[filled]
    observed = positive_sums[filled] / cases[filled]
    ece = float(np.sum(cases[filled] * np.abs(observed - mean_score)) / labels.size)
    edges = np.linspace(0.0, 1.0, bins + 1)
    curve = tuple(
        ReliabilityBin(float(edges[k]), float(edges[k + 1]), int(cases[k]), float(s), float(o))
        for k, s, o in zip(np.flatnonzero(filled), mean_score, observed, strict=True)
    )
    return Calibration(ece=ece, bins=bins, curve=curve)
