"""DeLong's variance and paired test against pROC's published test values.

Reference: pROC (Robin et al. 2011, BMC Bioinformatics 12:77), tests/testthat/test-var.R and
test-roc.test.R in https://github.com/xrobin/pROC, on its ``aSAH`` data set (113 patients after
aneurysmal subarachnoid haemorrhage; Turck et al. 2010, Intensive Care Med 36:107-115). The
columns used are transcribed below: outcome (1 = Poor), WFNS grade, S100B (in ug/L x 100).
"""

from __future__ import annotations

import numpy as np
import pytest

from oncofed.tef.metrics import MetricsError, compare_binary, delong

POOR = (
    "00001101001011001011101000000000100110110000000001100010001010011101101111000110100000"
    "010000000000001111110001000"
)
WFNS = (
    "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421"
    "451154221113125225552445111"
)
S100B_X100 = (
    "13 14 10 4 13 10 47 16 18 10 12 10 44 71 4 8 49 4 7 33 9 9 7 11 7 17 7 11 13 19 5 16 41 14 "
    "34 35 48 9 96 25 50 46 16 7 43 45 11 8 9 86 52 8 6 13 207 10 14 15 7 6 77 5 9 30 3 9 4 23 "
    "70 9 27 71 8 26 8 16 9 13 10 8 11 33 11 28 7 10 32 22 7 5 24 38 10 15 8 14 10 7 4 19 56 14 "
    "58 32 82 74 15 47 17 44 15 50 48"
)
PROC_TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def asah() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    outcome = np.array([c == "1" for c in POOR])
    wfns = np.array([float(c) for c in WFNS])
    s100b = np.array([int(v) / 100 for v in S100B_X100.split()])
    assert outcome.size == wfns.size == s100b.size == 113 and outcome.sum() == 41
    return outcome, wfns, s100b


def test_variance_matches_proc(asah: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    outcome, wfns, s100b = asah
    auc_wfns, var_wfns = delong.variance(outcome, wfns)
    auc_s100b, var_s100b = delong.variance(outcome, s100b)
    # pROC test-var.R: var(r.wfns), var(r.s100b)
    assert var_wfns == pytest.approx(0.00146991470882363, abs=PROC_TOLERANCE)
    assert var_s100b == pytest.approx(0.00266868245717244, abs=PROC_TOLERANCE)
    assert auc_wfns == pytest.approx(0.823678861788618, abs=PROC_TOLERANCE)
    assert auc_s100b == pytest.approx(0.731368563685637, abs=PROC_TOLERANCE)


def test_paired_test_matches_proc_roc_test(
    asah: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    outcome, wfns, s100b = asah
    # pROC test-roc.test.R: roc.test(r.wfns, r.s100b)
    found = compare_binary(outcome.astype(int), wfns, s100b)
    assert found.z == pytest.approx(2.20898359144091, abs=PROC_TOLERANCE)
    assert found.p_value == pytest.approx(0.0271757822291882, abs=PROC_TOLERANCE)
    assert found.ci[0] == pytest.approx(0.0104061769564846, abs=PROC_TOLERANCE)
    assert found.ci[1] == pytest.approx(0.174214419249478, abs=PROC_TOLERANCE)
    reversed_order = compare_binary(outcome.astype(int), s100b, wfns)
    assert reversed_order.z == pytest.approx(-found.z)
    assert reversed_order.p_value == pytest.approx(found.p_value)


def test_identical_rankings_do_not_differ_opposite_perfect_ones_surely_do(
    asah: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    outcome, wfns, _ = asah
    same = compare_binary(outcome.astype(int), wfns, wfns * 2 + 1)  # same ranking
    assert (same.difference, same.z, same.p_value) == (0.0, 0.0, 1.0)
    labels = np.array([0, 0, 1, 1])
    opposite = compare_binary(labels, [0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1])
    assert (opposite.difference, opposite.variance, opposite.z, opposite.p_value) == (
        1.0, 0.0, None, 0.0)  # fmt: skip
    assert same.to_dict()["ci"] == [0.0, 0.0]


def test_placements_agree_with_pairwise_definition() -> None:
    """The midrank shortcut equals DeLong's O(m n) pair comparisons, ties included."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60).astype(bool)
    scores = rng.integers(0, 6, 60).astype(float)
    auroc, v10, v01 = delong.placements(labels, scores[None, :])
    pos, neg = scores[labels], scores[~labels]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    np.testing.assert_allclose(v10[0], kernel.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(v01[0], kernel.mean(axis=0), atol=1e-12)
    assert auroc[0] == pytest.approx(kernel.mean(), abs=1e-12)


def test_logit_interval_stays_inside_zero_one_where_plain_does_not() -> None:
    plain = delong.interval(0.97, 0.0009, 0.05, scale="plain")
    logit = delong.interval(0.97, 0.0009, 0.05)
    assert plain[1] == 1.0  # clipped: 0.97 + 1.96 * 0.03 > 1
    assert 0.0 < logit[0] < 0.97 < logit[1] < 1.0


def test_comparison_checks_both_score_vectors() -> None:
    with pytest.raises(MetricsError, match="score_b has 1 NaN"):
        compare_binary([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, float("nan"), 0.3, 0.4])
    with pytest.raises(MetricsError, match="y_true has 4 values but score_a has 3"):
        compare_binary([0, 0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4])
