"""Pooling from aggregates: the stated bound always holds; ordinal pooling is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from oncofed.tef.metrics import (
    BinaryAggregate,
    MetricsError,
    OrdinalAggregate,
    binary_aggregate,
    evaluate_ordinal,
    ordinal_aggregate,
    pool_binary,
    pool_ordinal,
)
from oncofed.tef.release import coarsen


def node_cases(seed: int, cases: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """One node's seeded labels and probabilities (nodes differ in score distribution)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, cases)
    return labels, expit(rng.normal(shift, 1.0, cases) + 1.5 * labels)


@pytest.mark.parametrize("bins", [5, 20, 1000])
def test_bound_contains_the_exact_pooled_auroc(bins: int) -> None:
    nodes = [node_cases(seed, 150 + 40 * seed, shift) for seed, shift in enumerate([-1, 0, 1])]
    pooled = pool_binary([binary_aggregate(y, s, bins=bins) for y, s in nodes], n_bootstrap=200)
    exact = roc_auc_score(
        np.concatenate([y for y, _ in nodes]), np.concatenate([s for _, s in nodes])
    )
    assert pooled.auroc_low <= exact <= pooled.auroc_high
    assert abs(pooled.auroc.value - exact) <= pooled.bound
    assert pooled.bound == pytest.approx((pooled.auroc_high - pooled.auroc_low) / 2)
    assert pooled.positives + pooled.negatives == sum(y.size for y, _ in nodes)
    if bins == 1000:
        assert pooled.bound < 0.002
    low, high = pooled.auroc.ci or (0.0, 0.0)
    assert pooled.ci_conservative[0] == pytest.approx(low - pooled.bound)
    assert pooled.ci_conservative[1] == pytest.approx(high + pooled.bound)


def test_bound_holds_after_disclosure_coarsening_and_with_ties() -> None:
    nodes = [node_cases(seed, 120, 0.3 * seed) for seed in range(4)]
    nodes.append((np.array([0, 1] * 30), np.round(np.linspace(0, 1, 60), 1)))  # heavy ties
    aggregates = [coarsen(binary_aggregate(y, s, bins=100), 10) for y, s in nodes]
    pooled = pool_binary(aggregates, n_bootstrap=200)
    exact = roc_auc_score(
        np.concatenate([y for y, _ in nodes]), np.concatenate([s for _, s in nodes])
    )
    assert pooled.auroc_low <= exact <= pooled.auroc_high
    fine = pool_binary([binary_aggregate(y, s, bins=100) for y, s in nodes], n_bootstrap=200)
    assert pooled.bound >= fine.bound  # coarser groups, wider (honest) bound


def test_single_node_midpoint_equals_auroc_of_binned_scores() -> None:
    labels, scores = node_cases(9, 400, 0.0)
    pooled = pool_binary([binary_aggregate(labels, scores, bins=10)], n_bootstrap=100)
    binned = np.ceil(scores * 10)  # right-closed bins
    assert pooled.auroc.value == pytest.approx(roc_auc_score(labels, binned), abs=1e-12)


def test_ordinal_pooling_is_exact() -> None:
    rng = np.random.default_rng(5)
    parts = [(rng.integers(0, 6, n), rng.integers(0, 6, n)) for n in (40, 90, 25)]
    pooled = pool_ordinal([ordinal_aggregate(t, p, n_classes=6) for t, p in parts], n_bootstrap=200)
    truth = np.concatenate([t for t, _ in parts])
    predicted = np.concatenate([p for _, p in parts])
    direct = evaluate_ordinal(truth, predicted, n_classes=6, n_bootstrap=200)
    assert pooled.result.quadratic_kappa.value == direct.quadratic_kappa.value
    expected = cohen_kappa_score(truth, predicted, weights="quadratic", labels=range(6))
    assert abs(pooled.result.quadratic_kappa.value - expected) < 1e-9
    assert pooled.to_dict()["bound"] == 0.0 and pooled.nodes == 3


def test_aggregates_round_trip_through_json() -> None:
    labels, scores = node_cases(2, 80, 0.0)
    histogram = binary_aggregate(labels, scores, bins=50)
    assert BinaryAggregate.from_dict(json.loads(json.dumps(histogram.to_dict()))) == histogram
    matrix = ordinal_aggregate([0, 1, 2, 2], [0, 2, 2, 1], n_classes=3)
    assert OrdinalAggregate.from_dict(json.loads(json.dumps(matrix.to_dict()))) == matrix
    assert histogram.to_dict()["positives"] == int(labels.sum())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "confusion_matrix", "matrix": [[1]]}, "not a binary_histogram"),
        ({"kind": "binary_histogram", "bins": 10}, "has no 'groups'"),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[0, 1, 2]]}, "list of \\[start"),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[3, 2, 1, 1]]}, "ascending"),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[0, 11, 1, 1]]}, "within 0..10"),
        (
            {"kind": "binary_histogram", "bins": 10, "groups": [[0, 2, 1, 1], [1, 3, 1, 1]]},
            "disjoint",
        ),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[0, 1, -1, 1]]}, "integer >= 0"),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[0, 1, 0, 0]]}, "is empty"),
        ({"kind": "binary_histogram", "bins": 10, "groups": [[0, 1, 1.5, 1]]}, "integer >= 0"),
        (
            {"kind": "binary_histogram", "bins": 10, "positives": 9, "groups": [[0, 1, 1, 1]]},
            "positives is 9",
        ),
    ],
)
def test_malformed_histograms_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        BinaryAggregate.from_dict(data)


def test_bad_pooling_inputs_are_refused() -> None:
    with pytest.raises(MetricsError, match="no aggregates"):
        pool_binary([])
    labels, scores = node_cases(1, 50, 0.0)
    with pytest.raises(MetricsError, match="different histogram bins \\[10, 20\\]"):
        pool_binary(
            [binary_aggregate(labels, scores, bins=10), binary_aggregate(labels, scores, bins=20)]
        )
    with pytest.raises(MetricsError, match="one class only"):
        pool_binary([binary_aggregate([0, 0, 0], [0.1, 0.2, 0.3], bins=10)])
    with pytest.raises(MetricsError, match="probabilities in \\[0, 1\\]"):
        binary_aggregate([0, 1], [0.2, 1.2])
    with pytest.raises(MetricsError, match="different class counts"):
        pool_ordinal(
            [
                ordinal_aggregate([0, 1], [0, 1], n_classes=2),
                ordinal_aggregate([0, 1], [0, 1], n_classes=3),
            ]
        )
    with pytest.raises(MetricsError, match="square"):
        OrdinalAggregate.from_dict({"kind": "confusion_matrix", "matrix": [[1, 2], [3]]})
