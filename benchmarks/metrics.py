"""Confidence intervals at scale: oncofed's vectorised bootstrap and DeLong vs scikit-learn.

1. Stratified bootstrap percentile interval of the AUROC, 2,000 resamples of 100,000 cases.
   Peer: the plain loop everyone writes, resample the indices of each class and call
   ``sklearn.metrics.roc_auc_score`` (which sorts) per resample. The loop is timed on fewer
   resamples (``--sklearn-resamples``) and extrapolated linearly to 2,000 (each resample costs
   the same); oncofed runs all 2,000. Goal: at least 50x faster and under 3 s.
2. DeLong's AUROC variance (and the paired test of two algorithms) on 100,000 cases. Peer:
   one ``roc_auc_score`` call on the same cases, the cost of the AUROC alone. Goal: under 0.5 s.

Usage: python benchmarks/metrics.py [--cases 100000 --resamples 2000 --sklearn-resamples 40]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _common import machine, print_table, timed
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from oncofed.tef.metrics import compare_binary, delong
from oncofed.tef.metrics.binary import bootstrap_auroc


def fake_cohort(cases: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded labels (30% positive) and two algorithms' probabilities."""
    rng = np.random.default_rng(0)
    labels = rng.random(cases) < 0.3
    score_a = expit(rng.normal(0, 1, cases) + 1.5 * labels)
    score_b = expit(rng.normal(0, 1, cases) + 1.2 * labels)
    return labels, score_a, score_b


def sklearn_bootstrap(labels: np.ndarray, scores: np.ndarray, resamples: int) -> list[float]:
    """The peer: a stratified bootstrap loop around roc_auc_score."""
    rng = np.random.default_rng(1)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    out = []
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(positives, positives.size),
                               rng.choice(negatives, negatives.size)])  # fmt: skip
        out.append(roc_auc_score(labels[rows], scores[rows]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--sklearn-resamples", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    labels, score_a, score_b = fake_cohort(args.cases)
    print(f"{machine()}; {args.cases:,} cases, {int(labels.sum()):,} positive")

    def ours() -> None:
        bootstrap_auroc(labels, score_a, n_bootstrap=args.resamples, alpha=0.05, seed=0)

    ours_s = statistics.median(timed(ours, args.repeats)) / 1000
    peer_s = (
        statistics.median(
            timed(lambda: sklearn_bootstrap(labels, score_a, args.sklearn_resamples), args.repeats)
        )
        / 1000
        * (args.resamples / args.sklearn_resamples)
    )
    estimate = bootstrap_auroc(labels, score_a, n_bootstrap=args.resamples, alpha=0.05, seed=0)
    peer_ci = np.quantile(sklearn_bootstrap(labels, score_a, 400), [0.025, 0.975])
    print_table(
        f"AUROC bootstrap interval, {args.resamples:,} resamples x {args.cases:,} cases",
        ["method", "seconds", "x faster", "95% CI"],
        [
            [f"scikit-learn loop ({args.sklearn_resamples} timed, extrapolated)", peer_s, 1.0,
             f"{peer_ci[0]:.4f}-{peer_ci[1]:.4f} (400 resamples)"],
            ["oncofed bootstrap_auroc", ours_s, peer_s / ours_s,
             f"{estimate.ci[0]:.4f}-{estimate.ci[1]:.4f}" if estimate.ci else ""],
        ],
    )  # fmt: skip

    def variance() -> None:
        delong.variance(labels, score_a)

    def paired() -> None:
        compare_binary(labels, score_a, score_b)

    auc_ms = statistics.median(timed(lambda: roc_auc_score(labels, score_a), args.repeats))
    rows = [["scikit-learn roc_auc_score (AUROC only)", auc_ms, 1.0]]
    for name, action in (
        ("oncofed DeLong variance", variance),
        ("oncofed paired DeLong test", paired),
    ):
        ms = statistics.median(timed(action, args.repeats))
        rows.append([name, ms, ms / auc_ms])
    print_table(f"DeLong on {args.cases:,} cases", ["method", "ms", "x AUROC alone"], rows)


if __name__ == "__main__":
    main()
