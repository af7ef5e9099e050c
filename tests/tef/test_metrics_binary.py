"""Binary metrics agree with scikit-learn, intervals cover, bad input is refused clearly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    roc_auc_score,
)

from oncofed.tef.metrics import MetricsError, delong, evaluate_binary
from oncofed.tef.metrics.binary import bootstrap_auroc
from oncofed.tef.metrics.calibration import calibration

TOLERANCE = 1e-9


def fake_scores(seed: int, cases: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded labels and probabilities; rounding makes ties (many at 2 decimals, few at 6)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, cases)
    scores = expit(rng.normal(0.0, 1.0, cases) + 1.2 * labels - 0.3)
    return labels, scores if decimals is None else np.round(scores, decimals)


@pytest.mark.parametrize(("seed", "decimals"), [(1, None), (2, 1), (3, 2), (4, 6), (5, 0)])
def test_agrees_with_scikit_learn_including_ties(seed: int, decimals: int | None) -> None:
    labels, scores = fake_scores(seed, 400 + 37 * seed, decimals)
    result = evaluate_binary(labels, scores, operating_points=(0.3, 0.5), n_bootstrap=200)
    assert abs(result.auroc.value - roc_auc_score(labels, scores)) < TOLERANCE
    assert abs(result.auprc.value - average_precision_score(labels, scores)) < TOLERANCE
    assert abs(result.brier.value - brier_score_loss(labels, scores)) < TOLERANCE
    for point in result.operating_points:
        tn, fp, fn, tp = confusion_matrix(labels, scores >= point.threshold).ravel()
        assert (point.true_positives, point.false_positives) == (tp, fp)
        assert (point.true_negatives, point.false_negatives) == (tn, fn)
        assert abs(point.sensitivity.value - tp / (tp + fn)) < TOLERANCE
        assert abs(point.specificity.value - tn / (tn + fp)) < TOLERANCE
        assert point.ppv is not None and abs(point.ppv.value - tp / (tp + fp)) < TOLERANCE
    bootstrap = evaluate_binary(labels, scores, ci_method="bootstrap", n_bootstrap=200)
    assert bootstrap.auroc.value == pytest.approx(result.auroc.value, abs=TOLERANCE)


def test_reliability_curve_matches_scikit_learn_and_ece_follows_it() -> None:
    labels, scores = fake_scores(7, 900, 3)
    scores[:3] = [0.0, 0.1, 1.0]  # bin edges land where scikit-learn puts them
    found = calibration(labels.astype(bool), scores)
    observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    np.testing.assert_allclose([b.observed for b in found.curve], observed, atol=TOLERANCE)
    np.testing.assert_allclose([b.mean_score for b in found.curve], predicted, atol=TOLERANCE)
    weights = np.array([b.cases for b in found.curve]) / labels.size
    assert found.ece == pytest.approx(float(np.sum(weights * np.abs(observed - predicted))))
    perfect = calibration(np.array([False, True] * 50), np.full(100, 0.5))
    assert perfect.ece == 0.0


def test_intervals_cover_the_true_auroc_about_as_often_as_stated() -> None:
    """Binormal scores (positives N(1,1), negatives N(0,1)) have AUROC = Phi(1/sqrt 2)."""
    truth = float(norm.cdf(1 / np.sqrt(2)))
    rng = np.random.default_rng(11)
    hits = {"delong": 0, "bootstrap": 0}
    trials = 200
    for trial in range(trials):
        labels = np.arange(120) < 50
        scores = rng.normal(0.0, 1.0, 120) + labels
        auc, var = delong.variance(labels, scores)
        low, high = delong.interval(auc, var, 0.05)
        hits["delong"] += low <= truth <= high
        boot = bootstrap_auroc(labels, scores, n_bootstrap=200, alpha=0.05, seed=trial)
        assert boot.ci is not None and boot.value == pytest.approx(auc, abs=TOLERANCE)
        hits["bootstrap"] += boot.ci[0] <= truth <= boot.ci[1]
    for method, count in hits.items():
        assert 0.89 <= count / trials <= 0.99, (method, count)


def test_seeded_bootstrap_repeats_and_differs_across_seeds() -> None:
    labels, scores = fake_scores(3, 300, 2)
    first = evaluate_binary(labels, scores, ci_method="bootstrap", n_bootstrap=300, seed=5)
    again = evaluate_binary(labels, scores, ci_method="bootstrap", n_bootstrap=300, seed=5)
    other = evaluate_binary(labels, scores, ci_method="bootstrap", n_bootstrap=300, seed=6)
    assert first == again
    assert first.auroc.ci != other.auroc.ci


def test_result_is_json_safe_and_names_metrics_at_the_top() -> None:
    labels, scores = fake_scores(8, 200, 2)
    result = evaluate_binary(labels, scores, operating_points=(0.4,), n_bootstrap=100)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["auroc"]["method"] == "delong-logit"
    assert data["sensitivity"] == data["operating_points"][0]["sensitivity"]
    assert data["operating_points"][0]["threshold"] == 0.4
    assert data["positives"] + data["negatives"] == data["cases"] == 200
    assert data["ece"]["bins"] == 10 and sum(b["cases"] for b in data["reliability"]) == 200


def test_perfect_separation_gives_a_degenerate_delong_interval() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    result = evaluate_binary(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], n_bootstrap=100)
    assert result.auroc.value == 1.0 and result.auroc.ci == (1.0, 1.0)
    assert result.operating_points[0].ppv is not None
    nobody_flagged = evaluate_binary(labels, [0.1] * 3 + [0.2] * 3, n_bootstrap=100)
    assert nobody_flagged.operating_points[0].ppv is None


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "y_true has 3 values but score has 2"),
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "one class only"),
        ([0, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "too few cases for a CI"),
        ([0, 0, 1, 1], [0.1, float("nan"), 0.3, 0.4], "1 NaN or infinite values"),
        ([0, 0, 1, 1], [0.1, float("inf"), 0.3, 0.4], "NaN or infinite"),
        ([0, 2, 1, 1], [0.1, 0.2, 0.3, 0.4], "0/1 labels, got values such as \\[2\\]"),
        (["a", "b", "a", "b"], [0.1, 0.2, 0.3, 0.4], "0/1 labels"),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 1.4], "probabilities in \\[0, 1\\]; 1 are not"),
        ([0, 0, 1, 1], ["x", "y", "z", "w"], "must be numbers"),
        ([], [], "score is empty"),
        ([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]], "one-dimensional"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(
    labels: list[Any], scores: list[Any], message: str
) -> None:
    with pytest.raises(MetricsError, match=message):
        evaluate_binary(labels, scores, n_bootstrap=100)


def test_bad_settings_are_refused() -> None:
    labels, scores = fake_scores(1, 50, 2)
    with pytest.raises(MetricsError, match="alpha must lie in"):
        evaluate_binary(labels, scores, alpha=0.7)
    with pytest.raises(MetricsError, match="n_bootstrap must be at least 100"):
        evaluate_binary(labels, scores, n_bootstrap=10)
    with pytest.raises(MetricsError, match="operating points must be thresholds"):
        evaluate_binary(labels, scores, operating_points=(1.5,), n_bootstrap=100)
    with pytest.raises(MetricsError, match="ci_method must be"):
        evaluate_binary(labels, scores, ci_method="wald", n_bootstrap=100)  # type: ignore[arg-type]
