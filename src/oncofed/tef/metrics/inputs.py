"""Checks every metric input once, so the formulas can trust their arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from oncofed.errors import OncofedError

MIN_PER_CLASS = 2
"""Fewest positives and negatives a confidence interval needs (a variance needs two)."""


class MetricsError(OncofedError):
    """Inputs a metric cannot be computed from: the message names the input and the reason."""

    code = "metrics_error"


def _vector(values: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricsError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise MetricsError(f"{name} is empty")
    return array


def _same_length(a: NDArray[Any], b: NDArray[Any], names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise MetricsError(f"{names[0]} has {a.size} values but {names[1]} has {b.size}")


def check_confidence(alpha: float, n_bootstrap: int) -> None:
    """``alpha`` in (0, 0.5) and at least 100 bootstrap resamples."""
    if not 0 < alpha < 0.5:
        raise MetricsError(f"alpha must lie in (0, 0.5), got {alpha}")
    if n_bootstrap < 100:
        raise MetricsError(f"n_bootstrap must be at least 100, got {n_bootstrap}")


def binary_labels(y_true: ArrayLike) -> NDArray[np.bool_]:
    """Labels 0/1 (or booleans) as a boolean array; anything else is refused."""
    labels = _vector(y_true, "y_true")
    if labels.dtype == np.bool_:
        return np.asarray(labels, dtype=np.bool_)
    if labels.dtype.kind not in "iuf" or not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))][:3] if labels.dtype.kind in "iuf" else labels[:3]
        raise MetricsError(f"y_true must hold 0/1 labels, got values such as {bad.tolist()}")
    return np.asarray(labels == 1, dtype=np.bool_)


def finite_scores(score: ArrayLike, name: str = "score") -> NDArray[np.float64]:
    """Real, finite scores as float64."""
    array = _vector(score, name)
    if array.dtype.kind not in "iuf":
        raise MetricsError(f"{name} must be numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise MetricsError(
            f"{name} has {int(bad.sum())} NaN or infinite values (first at index "
            f"{int(np.argmax(bad))})"
        )
    return values


def probabilities(score: ArrayLike, name: str = "score") -> NDArray[np.float64]:
    """Finite scores that are probabilities in [0, 1]."""
    values = finite_scores(score, name)
    outside = (values < 0) | (values > 1)
    if outside.any():
        first = int(np.argmax(outside))
        raise MetricsError(
            f"{name} must be probabilities in [0, 1]; {int(outside.sum())} are not"
            f" (index {first}: {values[first]!r})"
        )
    return values


def binary_inputs(
    y_true: ArrayLike, score: ArrayLike, *, name: str = "score", need_ci: bool = True
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Matched 0/1 labels and finite scores with both classes present (two of each for a CI)."""
    labels = binary_labels(y_true)
    values = finite_scores(score, name)
    _same_length(labels, values, ("y_true", name))
    positives = int(labels.sum())
    negatives = labels.size - positives
    least = MIN_PER_CLASS if need_ci else 1
    if min(positives, negatives) < least:
        raise MetricsError(
            f"{positives} positive and {negatives} negative cases: "
            + ("one class only" if min(positives, negatives) == 0 else "too few cases for a CI")
            + f" (need at least {least} of each)"
        )
    return labels, values


def class_labels(values: ArrayLike, name: str, n_classes: int) -> NDArray[np.int64]:
    """Integer class indices in ``0 .. n_classes-1``."""
    array = _vector(values, name)
    if array.dtype.kind not in "iuf":
        raise MetricsError(f"{name} must be class indices, got dtype {array.dtype}")
    as_int = array.astype(np.int64)
    bad = (as_int != array) | (as_int < 0) | (as_int >= n_classes)
    if bad.any():
        raise MetricsError(
            f"{name} has values outside classes 0..{n_classes - 1}, such as"
            f" {array[bad][:3].tolist()}"
        )
    return as_int


def ordinal_inputs(
    y_true: ArrayLike, y_pred: ArrayLike, n_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Matched true and predicted class indices of ``n_classes`` >= 2 classes."""
    if n_classes < 2:
        raise MetricsError(f"n_classes must be at least 2, got {n_classes}")
    truth = class_labels(y_true, "y_true", n_classes)
    predicted = class_labels(y_pred, "y_pred", n_classes)
    _same_length(truth, predicted, ("y_true", "y_pred"))
    if truth.size < MIN_PER_CLASS:
        raise MetricsError(f"{truth.size} case: too few cases for a CI (need {MIN_PER_CLASS})")
    return truth, predicted
