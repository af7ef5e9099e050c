"""A metric value with its confidence interval and how the interval was made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest


@dataclass(frozen=True)
class Estimate:
    """``value`` with a ``1 - alpha`` interval ``ci`` made by ``method`` (None: no interval)."""

    value: float
    ci: tuple[float, float] | None
    method: str | None

    def to_dict(self) -> dict[str, Any]:
        """``{"value", "ci": [low, high] | None, "method"}``."""
        return {
            "value": self.value,
            "ci": None if self.ci is None else list(self.ci),
            "method": self.method,
        }


def proportion(successes: int, trials: int, alpha: float) -> Estimate | None:
    """A proportion with its Wilson score interval (Wilson 1927), or None when ``trials`` is 0.

    Wilson rather than the Wald interval, which misbehaves near 0 and 1, and rather than
    Clopper-Pearson, which is conservative (Brown, Cai & DasGupta 2001).
    """
    if trials == 0:
        return None
    low_high = binomtest(successes, trials).proportion_ci(1 - alpha, method="wilson")
    return Estimate(successes / trials, (float(low_high.low), float(low_high.high)), "wilson")
