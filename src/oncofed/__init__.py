"""oncofed: hospitals share cancer images for AI research without losing control of them."""

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.results import CohortCounts, CohortResult, FacetBucket
from oncofed.errors import OncofedError
from oncofed.node import Node

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "CohortCounts",
    "CohortResult",
    "FacetBucket",
    "Node",
    "OncofedError",
    "__version__",
]
