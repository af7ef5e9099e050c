"""Disclosure control of evaluation results: small groups withheld, counts protected,
aggregates released only in groups of at least k cases per class."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from scipy.special import expit

from oncofed.disclosure import DisclosurePolicy, QueryNoise
from oncofed.tef.metrics import (
    BinaryAggregate,
    binary_aggregate,
    evaluate_binary,
    evaluate_ordinal,
    ordinal_aggregate,
)
from oncofed.tef.release import coarsen, release_evaluation

K = 10
POLICY = DisclosurePolicy(min_count=K, rounding=5)


def binary_run(cases: int = 300, small_site: int = 12) -> dict[str, Any]:
    """A node result as the evaluator builds it, with one big and one small site."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, cases)
    scores = expit(rng.normal(0, 1, cases) + 1.4 * labels)
    site = np.arange(cases) < cases - small_site
    entry = {"cases": cases, **evaluate_binary(labels, scores, n_bootstrap=100).to_dict()}
    big = evaluate_binary(labels[site], scores[site], n_bootstrap=100).to_dict()
    small = evaluate_binary(labels[~site], scores[~site], n_bootstrap=100).to_dict()
    return {
        "run_id": "r1",
        "benchmark": {"id": "b", "version": "1", "sha256": "0" * 64},
        "status": "completed",
        "data": {"cases": cases, "excluded": {"no reference label": 3},
                 "per_class": {"0": int((labels == 0).sum()), "1": int(labels.sum())}},
        "predictions": {"stored_at_node": "tef/predictions/x.parquet", "cases": cases},
        "metrics": entry,
        "subgroups": {"site": {"big": {"cases": int(site.sum()), **big},
                               "small": {"cases": small_site, **small}},
                      "sex": {"F": {"cases": 1, "withheld": "one class only"}}},
        "aggregate": binary_aggregate(labels, scores).to_dict(),
    }  # fmt: skip


def test_small_subgroups_are_withheld_and_counts_protected() -> None:
    result = binary_run()
    original = copy.deepcopy(result)
    released = release_evaluation(result, POLICY)
    assert result == original  # the input is not changed
    assert released["subgroups"]["site"]["small"] == {
        "cases": 10, "withheld": "fewer than 10 cases of a class"
    }  # fmt: skip
    assert released["subgroups"]["sex"]["F"] == {"cases": "<10", "withheld": "one class only"}
    big = released["subgroups"]["site"]["big"]
    assert big["auroc"] == original["subgroups"]["site"]["big"]["auroc"]  # values stay exact
    assert big["cases"] % 5 == 0 and big["positives"] % 5 == 0
    assert released["data"]["excluded"] == {"no reference label": "<10"}
    point = released["metrics"]["operating_points"][0]
    counts = ("true_positives", "false_positives", "true_negatives", "false_negatives")
    assert all(isinstance(point[c], str) or point[c] % 5 == 0 for c in counts)
    assert all(b["cases"] % 5 == 0 for b in released["metrics"]["reliability"])
    assert released["disclosure"] == {"min_count": 10, "rounding": 5, "noise": False}
    json.dumps(released)


def test_histogram_groups_hold_no_class_count_below_k() -> None:
    released = release_evaluation(binary_run(), POLICY)["aggregate"]
    histogram = BinaryAggregate.from_dict(released)
    assert len(histogram.groups) > 3
    for _, _, positives, negatives in histogram.groups:
        assert positives in range(1) or positives >= K
        assert negatives in range(1) or negatives >= K
    raw = binary_run()["aggregate"]
    assert (histogram.positives, histogram.negatives) == (raw["positives"], raw["negatives"])


@pytest.mark.parametrize("seed", range(20))
def test_coarsening_always_ends_releasable(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(K, int), np.ones(K, int), rng.integers(0, 2, rng.integers(0, 40))]
    scores = rng.random(labels.size) ** rng.uniform(0.2, 5)
    merged = coarsen(binary_aggregate(labels, scores, bins=50), K)
    assert sum(g[2] for g in merged.groups) == labels.sum()
    assert all(p in range(1) or p >= K for _, _, p, _ in merged.groups)
    assert all(n in range(1) or n >= K for _, _, _, n in merged.groups)


def test_aggregates_of_too_few_cases_are_withheld() -> None:
    result = binary_run()
    result["aggregate"] = binary_aggregate([0] * 30 + [1] * 4, np.linspace(0, 1, 34)).to_dict()
    assert release_evaluation(result, POLICY)["aggregate"] == {
        "kind": "binary_histogram", "withheld": "fewer than 10 cases of a class"
    }  # fmt: skip


def ordinal_run(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    metrics = evaluate_ordinal(truth, predicted, n_classes=3, n_bootstrap=100).to_dict()
    return {
        "benchmark": {"id": "g", "version": "1", "sha256": "1" * 64},
        "data": {"cases": truth.size, "per_class": {}, "excluded": {}},
        "predictions": {"stored_at_node": "x", "cases": truth.size},
        "metrics": {"cases": truth.size, **metrics},
        "subgroups": {},
        "aggregate": ordinal_aggregate(truth, predicted, n_classes=3).to_dict(),
    }


def test_confusion_matrix_leaves_only_when_each_class_has_none_or_k() -> None:
    truth = np.r_[np.zeros(20, int), np.full(12, 2)]
    released = release_evaluation(ordinal_run(truth, truth[::-1].copy()), POLICY)
    assert released["aggregate"]["matrix"] == [[8, 0, 12], [0, 0, 0], [12, 0, 0]]
    assert released["metrics"]["confusion_matrix"][0] == ["<10", "<10", 10]
    rare = np.r_[truth, [1, 1]]
    withheld = release_evaluation(ordinal_run(rare, rare.copy()), POLICY)["aggregate"]
    assert withheld == {"kind": "confusion_matrix", "withheld": "a class has between 1 and 9 cases"}


def test_noise_is_seeded_by_the_benchmark_so_repeats_agree() -> None:
    noisy = DisclosurePolicy(min_count=K, rounding=1, noise=QueryNoise(b"s" * 16, scale=3, bound=5))
    first = release_evaluation(binary_run(), noisy)
    assert first == release_evaluation(binary_run(), noisy)
    assert first["disclosure"]["noise"] is True
