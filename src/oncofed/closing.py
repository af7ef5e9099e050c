"""A base for resources used as context managers that release themselves with ``close()``."""

from __future__ import annotations

from typing import Self


class Closing:
    """``with resource: ...`` calls ``resource.close()`` on the way out."""

    def close(self) -> None:
        """Release the resource."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
