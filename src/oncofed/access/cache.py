"""Verified API tokens remembered for a few seconds, so a request needs no identity query.

An entry is the principal a token was verified as, kept under the SHA-256 of the whole token
(never the token itself) until the earliest of: ``ttl_s`` after the check, the token's expiry,
the expiry of one of the user's grants. :meth:`PrincipalCache.invalidate` forgets everything at
once; the node server calls it after every change it makes to the catalog (token and grant
revocations included), so those take effect for the next request. The TTL bounds how long a
change made outside this process could go unseen.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from oncofed.access.policy import Principal

TOKEN_TTL_S = 10.0
MAX_ENTRIES = 4096

Check = Callable[[str], tuple[Principal, datetime]]
"""Verifies a token: its principal and when that answer expires by itself at the latest."""


class PrincipalCache:
    """Token digest → (principal, monotonic deadline); thread-safe."""

    def __init__(self, ttl_s: float = TOKEN_TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        """The remembered principal of ``token`` while still valid, else None."""
        key = _key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if time.monotonic() < entry[1]:
                return entry[0]
            del self._entries[key]
            return None

    def verify(self, token: str, check: Check) -> Principal:
        """The remembered principal, or ``check``'s answer (remembered unless an invalidation
        came while it ran: the answer may predate that change)."""
        cached = self.get(token)
        if cached is not None:
            return cached
        with self._lock:
            generation = self._generation
        principal, expires = check(token)
        left = min(self.ttl_s, (expires - datetime.now(UTC)).total_seconds())
        with self._lock:
            if generation == self._generation and left > 0:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[_key(token)] = (principal, time.monotonic() + left)
        return principal

    def invalidate(self) -> None:
        """Forget every remembered token (identities, tokens or grants may have changed)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
