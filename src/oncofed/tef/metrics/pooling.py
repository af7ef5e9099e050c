"""Pooled metrics across nodes from aggregates; no case-level prediction leaves a node.

Binary tasks: each node sends per-class score histograms on fixed edges ``k / bins`` of [0, 1]
(right-closed bins, as in :mod:`.calibration`), as *groups* ``(start, stop, positives,
negatives)``: the cases whose score lies in ``(start/bins, stop/bins]``. A group is one bin, or
several adjacent bins merged by disclosure control (:mod:`oncofed.tef.release`). The AUROC of the
pooled cases is then known up to the order of pairs whose groups overlap:

* ``auroc_low`` counts such pairs as losses, ``auroc_high`` as wins; the exact AUROC of the pooled
  cases lies in ``[auroc_low, auroc_high]``, always;
* the estimate is the midpoint (ties-as-half), its error at most ``bound = (high - low) / 2``.

Its interval is a stratified percentile bootstrap of the midpoint over the groups;
``ci_conservative`` widens it by the bound. Ordinal tasks: nodes send confusion matrices;
summing them gives the pooled matrix, from which kappa and accuracy are exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oncofed.tef.metrics.bootstrap import chunk_sizes, percentile_interval
from oncofed.tef.metrics.calibration import uniform_bins
from oncofed.tef.metrics.estimate import Estimate
from oncofed.tef.metrics.inputs import (
    MetricsError,
    binary_labels,
    check_confidence,
    ordinal_inputs,
    probabilities,
)
from oncofed.tef.metrics.ordinal import OrdinalResult, confusion_matrix, from_matrix

BINARY_KIND = "binary_histogram"
ORDINAL_KIND = "confusion_matrix"
Group = tuple[int, int, int, int]
"""``(start, stop, positives, negatives)``: cases with scores in ``(start/bins, stop/bins]``."""


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MetricsError(f"{what} must be a count (integer >= 0), got {value!r}")
    return value


def _field(data: Mapping[str, Any], key: str, kind: str) -> Any:
    if not isinstance(data, Mapping) or data.get("kind") != kind:
        raise MetricsError(f"not a {kind} aggregate: {str(data)[:80]}")
    if key not in data:
        raise MetricsError(f"{kind} aggregate has no {key!r}")
    return data[key]


@dataclass(frozen=True)
class BinaryAggregate:
    """Per-class score counts of one node in groups of adjacent histogram bins."""

    bins: int
    groups: tuple[Group, ...]

    def __post_init__(self) -> None:
        _count(self.bins, "bins")
        if self.bins < 1:
            raise MetricsError("a histogram needs at least one bin")
        previous_stop = 0
        for group in self.groups:
            start, stop, pos, neg = (_count(v, "a group field") for v in group)
            if not previous_stop <= start < stop <= self.bins:
                raise MetricsError(
                    f"group {list(group)}: bins must be ascending, disjoint and within"
                    f" 0..{self.bins}"
                )
            if pos + neg == 0:
                raise MetricsError(f"group {list(group)} is empty")
            previous_stop = stop

    @property
    def positives(self) -> int:
        """Positive cases in all groups."""
        return sum(g[2] for g in self.groups)

    @property
    def negatives(self) -> int:
        """Negative cases in all groups."""
        return sum(g[3] for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"kind", "bins", "positives", "negatives", "groups": [[start, stop,
        positives, negatives], ...]}``."""
        return {"kind": BINARY_KIND, "bins": self.bins, "positives": self.positives,
                "negatives": self.negatives, "groups": [list(g) for g in self.groups]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinaryAggregate:
        """Parse and check what :meth:`to_dict` wrote (it comes from another machine)."""
        groups = _field(data, "groups", BINARY_KIND)
        if not isinstance(groups, list) or any(
            not isinstance(g, list) or len(g) != 4 for g in groups
        ):
            raise MetricsError("groups must be a list of [start, stop, positives, negatives]")
        made = cls(_field(data, "bins", BINARY_KIND), tuple(tuple(g) for g in groups))
        for key in ("positives", "negatives"):
            if key in data and data[key] != getattr(made, key):
                raise MetricsError(
                    f"{key} is {data[key]!r} but the groups hold {getattr(made, key)}"
                )
        return made


@dataclass(frozen=True)
class OrdinalAggregate:
    """One node's confusion matrix (rows: true class, columns: predicted class)."""

    matrix: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        size = len(self.matrix)
        if size < 2 or any(len(row) != size for row in self.matrix):
            raise MetricsError(
                f"a confusion matrix must be square with >= 2 classes: {self.matrix}"
            )
        for row in self.matrix:
            for cell in row:
                _count(cell, "a confusion matrix cell")

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.matrix)

    @property
    def cases(self) -> int:
        """Cases counted."""
        return sum(map(sum, self.matrix))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"kind", "n_classes", "cases", "matrix"}``."""
        return {"kind": ORDINAL_KIND, "n_classes": self.n_classes, "cases": self.cases,
                "matrix": [list(row) for row in self.matrix]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrdinalAggregate:
        """Parse and check what :meth:`to_dict` wrote."""
        matrix = _field(data, "matrix", ORDINAL_KIND)
        if not isinstance(matrix, list) or not all(isinstance(r, list) for r in matrix):
            raise MetricsError("matrix must be a list of rows")
        return cls(tuple(tuple(row) for row in matrix))


@dataclass(frozen=True)
class PooledBinary:
    """AUROC of all nodes' cases together, with its binning bound and interval."""

    nodes: int
    positives: int
    negatives: int
    bins: int
    auroc: Estimate
    """The midpoint estimate with a stratified bootstrap percentile interval."""
    auroc_low: float
    auroc_high: float
    bound: float
    """Largest possible distance between the estimate and the exact pooled AUROC."""
    ci_conservative: tuple[float, float]
    """The interval widened by ``bound`` on both sides (clipped to [0, 1])."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {"nodes": self.nodes, "cases": self.positives + self.negatives,
                "positives": self.positives, "negatives": self.negatives, "bins": self.bins,
                "auroc": self.auroc.to_dict(), "auroc_low": self.auroc_low,
                "auroc_high": self.auroc_high, "bound": self.bound,
                "ci_conservative": list(self.ci_conservative)}  # fmt: skip


@dataclass(frozen=True)
class PooledOrdinal:
    """Kappa, accuracy and confusion matrix of all nodes' cases together (exact)."""

    nodes: int
    result: OrdinalResult

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the :class:`OrdinalResult` fields plus ``nodes`` and ``bound`` (0)."""
        return {"nodes": self.nodes, "bound": 0.0, **self.result.to_dict()}


def binary_aggregate(y_true: ArrayLike, score: ArrayLike, *, bins: int = 1000) -> BinaryAggregate:
    """Per-class histograms of probabilities on ``bins`` equal-width bins of [0, 1]."""
    labels = binary_labels(y_true)
    scores = probabilities(score)
    if labels.shape != scores.shape:
        raise MetricsError(f"y_true has {labels.size} values but score has {scores.size}")
    if bins < 1:
        raise MetricsError(f"bins must be at least 1, got {bins}")
    index = uniform_bins(scores, bins)
    positives = np.bincount(index[labels], minlength=bins)
    negatives = np.bincount(index[~labels], minlength=bins)
    filled = np.flatnonzero(positives + negatives)
    return BinaryAggregate(bins, tuple(
        (int(b), int(b) + 1, int(positives[b]), int(negatives[b])) for b in filled
    ))  # fmt: skip


def ordinal_aggregate(y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int) -> OrdinalAggregate:
    """The confusion matrix of one node."""
    truth, predicted = ordinal_inputs(y_true, y_pred, n_classes)
    matrix = confusion_matrix(truth, predicted, n_classes)
    return OrdinalAggregate(tuple(tuple(int(c) for c in row) for row in matrix))


def _auroc_bounds(
    starts: NDArray[np.int64], stops: NDArray[np.int64], pos: NDArray[Any], neg: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lowest and highest AUROC consistent with grouped counts; ``pos``/``neg`` may carry a
    leading axis of resamples."""
    by_stop = np.argsort(stops, kind="stable")
    by_start = np.argsort(starts, kind="stable")
    zero = np.zeros((*neg.shape[:-1], 1))
    below_stop = np.concatenate([zero, np.cumsum(neg[..., by_stop], axis=-1)], axis=-1)
    below_start = np.concatenate([zero, np.cumsum(neg[..., by_start], axis=-1)], axis=-1)
    # negatives certainly below each group: their stop <= its start
    wins = below_stop[..., np.searchsorted(stops[by_stop], starts, side="right")]
    # negatives not certainly above it: their start < its stop
    not_losses = below_start[..., np.searchsorted(starts[by_start], stops, side="left")]
    pairs = pos.sum(axis=-1, dtype=np.float64) * neg.sum(axis=-1, dtype=np.float64)
    low = (pos * wins).sum(axis=-1) / pairs
    high = (pos * not_losses).sum(axis=-1) / pairs
    return np.asarray(low), np.asarray(high)


def pool_binary(
    aggs: Sequence[BinaryAggregate], *, n_bootstrap: int = 2000, alpha: float = 0.05, seed: int = 0
) -> PooledBinary:
    """Pooled AUROC (midpoint, exact bounds, bootstrap interval) from nodes' histograms."""
    check_confidence(alpha, n_bootstrap)
    if not aggs:
        raise MetricsError("nothing to pool: no aggregates")
    bins = {a.bins for a in aggs}
    if len(bins) != 1:
        raise MetricsError(f"aggregates use different histogram bins {sorted(bins)}; cannot pool")
    groups = np.array([g for a in aggs for g in a.groups], dtype=np.int64).reshape(-1, 4)
    starts, stops, pos, neg = groups.T
    positives, negatives = int(pos.sum()), int(neg.sum())
    if min(positives, negatives) == 0:
        raise MetricsError(f"pooled cases have {positives} positives and {negatives} negatives:"
                           " one class only")  # fmt: skip
    low, high = (float(v) for v in _auroc_bounds(starts, stops, pos, neg))
    rng = np.random.default_rng(seed)
    resampled = []
    for rows in chunk_sizes(n_bootstrap, groups.shape[0]):
        pos_b = rng.multinomial(positives, pos / positives, size=rows)
        neg_b = rng.multinomial(negatives, neg / negatives, size=rows)
        low_b, high_b = _auroc_bounds(starts, stops, pos_b, neg_b)
        resampled.append((low_b + high_b) / 2)
    ci = percentile_interval(np.concatenate(resampled), alpha)
    bound = (high - low) / 2
    return PooledBinary(
        nodes=len(aggs), positives=positives, negatives=negatives, bins=bins.pop(),
        auroc=Estimate((low + high) / 2, ci, "bootstrap-stratified-percentile"),
        auroc_low=low, auroc_high=high, bound=bound,
        ci_conservative=(max(0.0, ci[0] - bound), min(1.0, ci[1] + bound)),
    )  # fmt: skip


def pool_ordinal(
    aggs: Sequence[OrdinalAggregate], *, n_bootstrap: int = 2000, alpha: float = 0.05, seed: int = 0
) -> PooledOrdinal:
    """Pooled kappa and accuracy from the sum of the nodes' confusion matrices."""
    if not aggs:
        raise MetricsError("nothing to pool: no aggregates")
    sizes = {a.n_classes for a in aggs}
    if len(sizes) != 1:
        raise MetricsError(f"confusion matrices have different class counts {sorted(sizes)}")
    total = np.sum([np.array(a.matrix, dtype=np.int64) for a in aggs], axis=0)
    return PooledOrdinal(len(aggs), from_matrix(total, n_bootstrap, alpha, seed))
