"""oncofed: hospitals share cancer images for AI research without losing control of them.

The public names below are imported on first use (PEP 562), so importing one submodule (as
each ingest worker process does) does not load the node, catalog and de-identification code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oncofed.catalog.catalog import Catalog
    from oncofed.catalog.results import CohortCounts, CohortResult, FacetBucket
    from oncofed.errors import OncofedError
    from oncofed.node import Node

__version__ = "0.1.0"

_HOMES = {
    "Catalog": "oncofed.catalog.catalog",
    "CohortCounts": "oncofed.catalog.results",
    "CohortResult": "oncofed.catalog.results",
    "FacetBucket": "oncofed.catalog.results",
    "Node": "oncofed.node",
    "OncofedError": "oncofed.errors",
}

__all__ = [
    "Catalog",
    "CohortCounts",
    "CohortResult",
    "FacetBucket",
    "Node",
    "OncofedError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'oncofed' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
