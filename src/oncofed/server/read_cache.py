"""Answers of catalog reads, remembered until the node server next writes the catalog.

Every catalog write of a served node goes through its :class:`~oncofed.server.service.NodeService`
(DuckDB allows one writer process), which calls :meth:`ReadCache.invalidate` after each one, so
a remembered answer is never older than the last change. A hot read (the instances of a series
for WADO-RS) then costs a dictionary look-up instead of a DuckDB query (~0.5-1 ms each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 4096


class ReadCache:
    """key → answer since the last change; thread-safe, bounded (full: starts afresh). The
    generation counts changes, so an answer computed across one is not kept."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, Any] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered answer for ``key``, else ``compute()``'s (remembered unless the
        catalog changed while it ran: the answer may predate that change)."""
        with self._lock:
            generation = self._generation
            if key in self._entries:
                remembered: T = self._entries[key]
                return remembered
        answer = compute()
        with self._lock:
            if self._generation == generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = answer
        return answer

    def invalidate(self) -> None:
        """Forget every answer (the catalog has changed)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
