"""Ordinal metrics agree with scikit-learn; the kappa interval is seeded and sensible."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

from oncofed.tef.metrics import MetricsError, evaluate_ordinal

TOLERANCE = 1e-9
ISUP = 6


def fake_grades(seed: int, cases: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded reference grades and predictions off by at most one or two grades."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, ISUP, cases)
    predicted = np.clip(truth + rng.choice([-2, -1, 0, 0, 0, 1], cases), 0, ISUP - 1)
    return truth, predicted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_scikit_learn(seed: int) -> None:
    truth, predicted = fake_grades(seed, 150 * seed)
    result = evaluate_ordinal(truth, predicted, n_classes=ISUP, n_bootstrap=200)
    every = list(range(ISUP))
    expected = cohen_kappa_score(truth, predicted, weights="quadratic", labels=every)
    assert abs(result.quadratic_kappa.value - expected) < TOLERANCE
    assert abs(result.accuracy.value - accuracy_score(truth, predicted)) < TOLERANCE
    assert np.array_equal(result.confusion_matrix, confusion_matrix(truth, predicted, labels=every))
    low, high = result.quadratic_kappa.ci or (0.0, 0.0)
    assert low < result.quadratic_kappa.value < high


def test_class_distances_count_even_when_a_grade_is_absent() -> None:
    """Grades 0, 2, 5 only: kappa weighs a 0-vs-5 error as 25, not as the 3rd label's 4."""
    truth = np.array([0, 0, 2, 2, 5, 5, 0, 5])
    predicted = np.array([0, 2, 2, 5, 5, 0, 0, 5])
    result = evaluate_ordinal(truth, predicted, n_classes=ISUP, n_bootstrap=100)
    expected = cohen_kappa_score(truth, predicted, weights="quadratic", labels=range(ISUP))
    assert result.quadratic_kappa.value == pytest.approx(expected, abs=TOLERANCE)
    assert result.quadratic_kappa.value != pytest.approx(
        cohen_kappa_score(truth, predicted, weights="quadratic"), abs=1e-3
    )


def test_seeded_and_json_safe() -> None:
    truth, predicted = fake_grades(4, 120)
    first = evaluate_ordinal(truth, predicted, n_classes=ISUP, n_bootstrap=300, seed=2)
    assert first == evaluate_ordinal(truth, predicted, n_classes=ISUP, n_bootstrap=300, seed=2)
    data = json.loads(json.dumps(first.to_dict()))
    assert data["quadratic_kappa"]["method"] == "bootstrap-percentile"
    assert data["accuracy"]["method"] == "wilson"
    assert sum(map(sum, data["confusion_matrix"])) == data["cases"] == 120


@pytest.mark.parametrize(
    ("truth", "predicted", "classes", "message"),
    [
        ([0, 1, 2], [0, 1], ISUP, "y_true has 3 values but y_pred has 2"),
        ([0, 1, 6], [0, 1, 2], ISUP, "y_true has values outside classes 0..5, such as \\[6\\]"),
        ([0, 1, 2], [0, 1.5, 2], ISUP, "y_pred has values outside classes"),
        ([0, 1, 2], [0, -1, 2], ISUP, "y_pred has values outside"),
        ([1], [1], ISUP, "too few cases for a CI"),
        ([2, 2, 2], [2, 2, 2], ISUP, "kappa is undefined"),
        ([0, 1], [0, 1], 1, "n_classes must be at least 2"),
        (["a", "b"], [0, 1], ISUP, "must be class indices"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(
    truth: list[Any], predicted: list[Any], classes: int, message: str
) -> None:
    with pytest.raises(MetricsError, match=message):
        evaluate_ordinal(truth, predicted, n_classes=classes, n_bootstrap=100)
