"""Binary metrics of drawn cases, ranked once and then only counted.

The cases are sorted once (:class:`RankedCases`). A metric is then a function of which cases are
drawn (:class:`Draws`): each case once for the point estimate, a bootstrap resample's indices
otherwise (:mod:`.bootstrap`). So a resample costs a few linear passes and never a sort: AUROC
sums, over the drawn positives, the drawn negatives below each one (a cumulative count looked up
at the positive's precomputed place among the negatives; ties one half: Mann-Whitney); average
precision uses cumulative weights at each distinct positive score; Brier sums squared errors of
the drawn cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

Weights = NDArray[np.float64]


@dataclass(frozen=True)
class RankedCases:
    """Positives and negatives (each sorted ascending) with what every metric needs precomputed."""

    positives: NDArray[np.float64]
    negatives: NDArray[np.float64]
    below: NDArray[np.intp]
    """Per positive: negatives with a strictly lower score."""
    not_above: NDArray[np.intp]
    """Per positive: negatives with a lower or equal score."""
    thresholds: NDArray[np.intp]
    """Per distinct positive score ``t``, rows ``[positives >= t, positives > t, negatives >= t]``
    as indices into the sorted positives and negatives."""

    @classmethod
    def of(cls, labels: NDArray[np.bool_], scores: NDArray[np.float64]) -> RankedCases:
        """Sort once; everything after is counting."""
        positives, negatives = np.sort(scores[labels]), np.sort(scores[~labels])
        distinct = np.unique(positives)
        return cls(
            positives=positives,
            negatives=negatives,
            below=np.searchsorted(negatives, positives, side="left"),
            not_above=np.searchsorted(negatives, positives, side="right"),
            thresholds=np.stack(
                [
                    np.searchsorted(positives, distinct, side="left"),
                    np.searchsorted(positives, distinct, side="right"),
                    np.searchsorted(negatives, distinct, side="left"),
                ]
            ),
        )

    def auroc(self, draws: Draws) -> float:
        """Mann-Whitney AUROC: P(positive outscores negative), ties counting one half."""
        below = draws.negatives_below
        # per positive (in sorted order, so the lookups run forward), then per drawn positive;
        # integer counts, exact: twice the wins, so that a tie counts one
        wins_twice = below[self.below] + below[self.not_above]
        drawn_wins_twice = wins_twice[draws.positives].sum()
        pairs = draws.positives.size * draws.negatives.size
        return float(drawn_wins_twice / (2.0 * pairs))

    def average_precision(self, draws: Draws) -> float:
        """AUPRC as average precision: the precision at each distinct threshold weighted by the
        recall it adds (step-wise, not interpolated, as scikit-learn defines it)."""
        # thresholds at positive scores only: elsewhere no recall is added
        pos, neg = draws.positive_weights, draws.negative_weights
        pos_at_or_above = pos.sum() - np.concatenate([[0.0], np.cumsum(pos)])
        neg_at_or_above = neg.sum() - np.concatenate([[0.0], np.cumsum(neg)])
        true_pos = pos_at_or_above[self.thresholds[0]]
        gained = true_pos - pos_at_or_above[self.thresholds[1]]
        flagged = true_pos + neg_at_or_above[self.thresholds[2]]
        precision = np.divide(true_pos, flagged, out=np.zeros_like(true_pos), where=true_pos > 0)
        return float(np.sum(gained * precision) / pos.sum())

    def brier(self, draws: Draws) -> float:
        """Mean squared difference between probability and outcome (Brier 1950)."""
        squared = np.sum((1.0 - self.positives[draws.positives]) ** 2) + np.sum(
            self.negatives[draws.negatives] ** 2
        )
        return float(squared / (draws.positives.size + draws.negatives.size))

    def everyone(self) -> Draws:
        """Every case once: the observed data."""
        return Draws(np.arange(self.positives.size), np.arange(self.negatives.size))


class Draws:
    """Which positives and negatives (indices into the sorted arrays) a sample holds, with the
    counts metrics need computed once and shared."""

    def __init__(self, positives: NDArray[np.intp], negatives: NDArray[np.intp]) -> None:
        self.positives = positives
        self.negatives = negatives

    @cached_property
    def negatives_below(self) -> NDArray[np.int64]:
        """Entry ``j``: drawn negatives among the ``j`` lowest-scoring negatives."""
        below = np.zeros(self.negatives.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.negatives, minlength=self.negatives.size), out=below[1:])
        return below

    @cached_property
    def positive_weights(self) -> Weights:
        """How often each positive is drawn."""
        return np.bincount(self.positives, minlength=self.positives.size).astype(np.float64)

    @cached_property
    def negative_weights(self) -> Weights:
        """How often each negative is drawn."""
        return np.bincount(self.negatives, minlength=self.negatives.size).astype(np.float64)
