"""DeLong's AUROC variance and paired test, computed the fast way (Sun & Xu 2014).

DeLong, DeLong & Clarke-Pearson (1988) write the AUROC as the mean of per-case *placement
values* (for a positive: the share of negatives it outscores; for a negative: the share of
positives that outscore it, ties one half) and estimate its variance, and the covariance of two
AUROCs on the same cases, from the sample covariance of those placements. Sun & Xu (2014) get all
placements from three midrank computations (positives, negatives, all cases), O(n log n) instead
of DeLong's O(m·n) pair comparisons.

Confidence interval of one AUROC: on the **logit scale**, then transformed back. The plain
``AUROC ± z·SE`` interval can leave [0, 1] and undercovers when the AUROC is near 1, where good
algorithms live; the logit interval stays inside (0, 1) and is the better-covering choice there
(Pepe 2003, §5.2; Qin & Hotilovac 2008). At an AUROC of exactly 0 or 1 DeLong's variance is 0
and the interval collapses to the point. The paired difference of two AUROCs is tested and given
an interval on the plain scale, as pROC's ``roc.test`` does (a difference has no bounded range
to respect).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logit
from scipy.stats import norm, rankdata

Scale = Literal["logit", "plain"]


@dataclass(frozen=True)
class DelongComparison:
    """Paired DeLong test of AUROC(a) = AUROC(b) on the same cases (two-sided)."""

    auroc_a: float
    auroc_b: float
    difference: float
    """``auroc_a - auroc_b``."""
    variance: float
    """Variance of the difference: var(a) + var(b) - 2 cov(a, b)."""
    z: float | None
    """None when the variance is 0 but the AUROCs differ (e.g. one perfect, one perfectly
    inverted): no sampling variability to scale by, and ``p_value`` is 0."""
    p_value: float
    ci: tuple[float, float]
    """Interval of the difference on the plain scale, at level ``1 - alpha``."""
    alpha: float
    cases: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (the interval as a list)."""
        return {**asdict(self), "ci": list(self.ci)}


def placements(
    labels: NDArray[np.bool_], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """AUROCs and placement values of ``k`` score vectors (``scores`` shaped ``(k, n)``).

    Returns ``(auroc[k], v10[k, m], v01[k, n])``: per positive, the share of negatives it
    outscores; per negative, one minus the share of positives it outscores (ties one half).
    """
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    combined = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    within_pos = rankdata(positives, axis=1)
    within_neg = rankdata(negatives, axis=1)
    v10 = (combined[:, :m] - within_pos) / n
    v01 = 1.0 - (combined[:, m:] - within_neg) / m
    return v10.mean(axis=1), v10, v01


def covariance(
    labels: NDArray[np.bool_], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """AUROCs ``[k]`` and DeLong's covariance matrix ``[k, k]`` of ``k`` score vectors."""
    aurocs, v10, v01 = placements(labels, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aurocs, s10 / m + s01 / n


def variance(labels: NDArray[np.bool_], scores: NDArray[np.float64]) -> tuple[float, float]:
    """AUROC of one score vector and DeLong's estimate of its variance."""
    aurocs, cov = covariance(labels, scores[None, :])
    return float(aurocs[0]), float(cov[0, 0])


def interval(auroc: float, var: float, alpha: float, scale: Scale = "logit") -> tuple[float, float]:
    """A ``1 - alpha`` normal interval for an AUROC with variance ``var``."""
    z = float(norm.ppf(1 - alpha / 2))
    if scale == "plain":
        half = z * math.sqrt(var)
        return max(0.0, auroc - half), min(1.0, auroc + half)
    if auroc in (0.0, 1.0) or var == 0.0:
        return auroc, auroc
    # delta method: var(logit A) = var(A) / (A (1 - A))^2
    half = z * math.sqrt(var) / (auroc * (1 - auroc))
    centre = float(logit(auroc))
    return float(expit(centre - half)), float(expit(centre + half))


def compare(
    labels: NDArray[np.bool_],
    score_a: NDArray[np.float64],
    score_b: NDArray[np.float64],
    alpha: float = 0.05,
) -> DelongComparison:
    """Paired DeLong test of two algorithms' AUROCs on the same cases."""
    aurocs, cov = covariance(labels, np.stack([score_a, score_b]))
    difference = float(aurocs[0] - aurocs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z: float | None
    if var > 0:
        z = difference / math.sqrt(var)
        p_value = float(2 * norm.sf(abs(z)))
    elif difference == 0:  # identical rankings: no difference and nothing to test
        z, p_value = 0.0, 1.0
    else:  # both rank the cases without error, in different orders: the difference is certain
        z, p_value = None, 0.0
    half = float(norm.ppf(1 - alpha / 2)) * math.sqrt(max(var, 0.0))
    return DelongComparison(
        auroc_a=float(aurocs[0]),
        auroc_b=float(aurocs[1]),
        difference=difference,
        variance=var,
        z=z,
        p_value=p_value,
        ci=(difference - half, difference + half),
        alpha=alpha,
        cases=int(labels.size),
    )
