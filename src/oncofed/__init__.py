"""oncofed: hospitals share cancer images for AI research without losing control of them."""

from oncofed.errors import OncofedError

__version__ = "0.1.0"

__all__ = ["OncofedError", "__version__"]
