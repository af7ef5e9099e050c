"""Sites of a generated multi-site cohort, each with its own seeded random generator."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def seeded_sites(
    sites: Sequence[str], known: Collection[str], seed: int
) -> list[tuple[str, np.random.Generator]]:
    """``(site, generator seeded with [seed, site index])`` per site; names not in ``known``
    are refused before anything is written."""
    unknown = [s for s in sites if s not in known]
    if unknown:
        raise ValueError(f"unknown sites {unknown}; choose from {sorted(known)}")
    return [(site, np.random.default_rng([seed, index])) for index, site in enumerate(sites)]
