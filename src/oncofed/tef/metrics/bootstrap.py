"""Vectorised, seeded bootstrap with percentile intervals (Efron & Tibshirani 1993, ch. 13).

Binary metrics use the *stratified* bootstrap: positives and negatives are resampled separately,
so every resample keeps the observed prevalence and has both classes (pROC's default too). The
cases are ranked once (:class:`.ranked.RankedCases`); a resample is only which cases are drawn
(uniform indices, i.e. multinomial weights), and the metrics are sums over the precomputed
ranking. No resample sorts anything, and memory stays O(cases) whatever the
number of resamples.

Percentile rather than BCa intervals: BCa needs a jackknife (one metric evaluation per case,
100,000 of them for a large benchmark) and is not what pROC reports; percentile intervals are
transformation-respecting and, at the sample sizes benchmarks need, close to BCa.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

from oncofed.tef.metrics.ranked import Draws, RankedCases

MAX_CELLS = 1 << 22
"""Counts held at once when cells are drawn in chunks (:func:`multinomial_counts`): 32 MiB."""


def chunk_sizes(total: int, width: int) -> Iterator[int]:
    """Rows per chunk so that a chunk of ``width``-wide rows holds at most MAX_CELLS values."""
    size = max(1, MAX_CELLS // max(width, 1))
    for start in range(0, total, size):
        yield min(size, total - start)


def stratified_binary(
    ranked: RankedCases,
    statistics: tuple[Callable[[Draws], float], ...],
    n_resamples: int,
    seed: int,
) -> NDArray[np.float64]:
    """Each statistic over ``n_resamples`` stratified resamples (positives and negatives drawn
    with replacement, each class to its own size); shape ``(n_resamples, len(statistics))``."""
    rng = np.random.default_rng(seed)
    m, n = ranked.positives.size, ranked.negatives.size
    out = np.empty((n_resamples, len(statistics)))
    for row in range(n_resamples):
        draws = Draws(rng.integers(0, m, m), rng.integers(0, n, n))
        out[row] = [statistic(draws) for statistic in statistics]
    return out


def multinomial_counts(
    counts: NDArray[np.int64], n_resamples: int, seed: int
) -> Iterator[NDArray[np.int64]]:
    """Case bootstrap of data summarised by cell counts (a confusion matrix): resampling the
    cases equals drawing the cells from a multinomial. Yields chunks shaped ``(rows, cells)``."""
    rng = np.random.default_rng(seed)
    flat = counts.ravel()
    total = int(flat.sum())
    for rows in chunk_sizes(n_resamples, flat.size):
        yield rng.multinomial(total, flat / total, size=rows)


def percentile_interval(estimates: NDArray[np.float64], alpha: float) -> tuple[float, float]:
    """The ``alpha/2`` and ``1-alpha/2`` quantiles, ignoring resamples where the metric is
    undefined (NaN)."""
    low, high = np.nanquantile(estimates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
