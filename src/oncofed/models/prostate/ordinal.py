"""ISUP grade groups as an ordinal target: CORN (Shi, Cao and Raschka 2023).

The network gives five logits; logit ``k`` is the conditional chance that the grade group
exceeds ``k`` given that it exceeds ``k - 1``. Their running products are ``P(grade > k)``,
monotone by construction, so the six class probabilities are never negative;
``P(grade > 0)`` is the probability of cancer. The loss trains logit ``k`` only on slides whose
grade is at least ``k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from torch import Tensor
from torch.nn import functional

GRADES = 6
THRESHOLDS = GRADES - 1


def corn_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of each threshold over the slides it applies to."""
    grade = target.long()
    total, count = logits.new_zeros(()), 0
    for k in range(THRESHOLDS):
        reached = grade >= k
        if bool(reached.any()):
            total = total + functional.binary_cross_entropy_with_logits(
                logits[reached, k], (grade[reached] > k).float(), reduction="sum"
            )
            count += int(reached.sum())
    return total / max(count, 1)


def exceedance(logits: Tensor) -> Tensor:
    """``P(grade > k)`` for k = 0..4, ``[..., 5]`` (a running product, summed in log space:
    ONNX has CumSum but no cumulative product)."""
    return torch.exp(torch.cumsum(functional.logsigmoid(logits), dim=-1))


def grade_probabilities(logits: Tensor) -> Tensor:
    """Probabilities of grade groups 0..5, ``[..., 6]``, summing to 1."""
    above = exceedance(logits)
    ones = torch.ones_like(above[..., :1])
    zeros = torch.zeros_like(above[..., :1])
    return torch.cat([ones, above], dim=-1) - torch.cat([above, zeros], dim=-1)


def probabilities_of(logits: NDArray[Any]) -> NDArray[np.float64]:
    """:func:`grade_probabilities` of NumPy logits."""
    with torch.no_grad():
        return grade_probabilities(torch.as_tensor(logits, dtype=torch.float64)).numpy()


def quadratic_kappa(targets: NDArray[Any], logits: NDArray[Any]) -> float:
    """Quadratic weighted kappa of the most probable grade group against the reference."""
    predicted = probabilities_of(logits).argmax(axis=1)
    actual = np.asarray(targets).astype(np.int64)
    if len(np.unique(np.concatenate([actual, predicted]))) < 2:
        return 0.0  # one grade everywhere: agreement no better than chance
    return float(cohen_kappa_score(actual, predicted, weights="quadratic", labels=range(GRADES)))


def cancer_auroc(targets: NDArray[Any], logits: NDArray[Any]) -> float:
    """AUROC of P(cancer) for grade group > 0; NaN when one class is missing."""
    malignant = (np.asarray(targets) > 0).astype(np.int64)
    if len(np.unique(malignant)) < 2:
        return float("nan")
    return float(roc_auc_score(malignant, probabilities_of(logits)[:, 1:].sum(axis=1)))
