"""Disclosure control: the one function every count passes before it leaves a node (DESIGN §6).

Counts below ``min_count`` are suppressed (reported as ``"<k"``); the rest are rounded to the
nearest multiple of ``rounding``; bytes are rounded to megabytes; facet values seen in fewer
than k patients are left out, so rare values (a unique scanner, say) are not revealed.

With :class:`QueryNoise`, a bounded integer offset is added before suppression and rounding. It
is derived from a node secret, the query's canonical form and the measure's label, so asking the
same query again returns the same answer (averaging learns nothing), while two cohorts that
differ by one patient get independent offsets: one such pair tells an attacker little (see
docs/federation.md for the numbers). :class:`QueryBudget` caps queries per user per UTC day,
which caps how many pairs anyone can collect.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from oncofed.catalog.results import CohortResult
from oncofed.config import NodeSettings
from oncofed.errors import ConfigError, ForbiddenError, OncofedError

Protected = int | str
QueryKey = Mapping[str, Any] | bytes
_COUNTS = ("patients", "studies", "series", "instances")
MIN_SECRET_BYTES = 16
NOISE_KEY_DOMAIN = b"oncofed/disclosure/v1/noise"
NOISE_BOUND_SCALES = 5  # noise is truncated at 5 scales (P(|e| > 5 scales) < 1 %)


class DisclosureError(OncofedError):
    """A number could not be released safely (e.g. noise is on but no query was given)."""

    code = "disclosure_error"


class QueryBudgetError(ForbiddenError):
    """The user has used up today's query budget."""

    code = "query_budget_exhausted"


def query_key(query: QueryKey) -> bytes:
    """The canonical bytes of a query (sorted keys, compact JSON), or ``query`` if bytes."""
    if isinstance(query, bytes):
        return query
    text = json.dumps(query, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


@dataclass(frozen=True)
class QueryNoise:
    """Integer noise fixed per (node secret, query, label): a discrete Laplace distribution,
    P(e) ∝ exp(-|e|/scale), truncated to [-bound, bound]."""

    secret: bytes = field(repr=False)
    scale: float = 10.0
    bound: int = 50

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the noise secret needs at least {MIN_SECRET_BYTES} bytes")
        if self.scale <= 0 or self.bound < 0:
            raise ConfigError(
                f"noise needs scale > 0 and bound >= 0, got {self.scale}, {self.bound}"
            )

    def offset(self, query: QueryKey, label: str) -> int:
        """The offset for measure ``label`` of ``query`` (64 bits of HMAC-SHA256, inverted)."""
        message = query_key(query) + b"\x00" + label.encode("utf-8")
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        draw = int.from_bytes(digest[:8], "big")
        return bisect.bisect_right(_thresholds(self.scale, self.bound), draw) - self.bound


@lru_cache(maxsize=16)
def _thresholds(scale: float, bound: int) -> tuple[int, ...]:
    """Cumulative probabilities of -bound..bound on a 2^64 scale, for inverse sampling."""
    weights = [math.exp(-abs(e) / scale) for e in range(-bound, bound + 1)]
    total, running, out = sum(weights), 0.0, []
    for weight in weights[:-1]:
        running += weight
        out.append(int(running / total * 2**64))
    return tuple(out)


@dataclass(frozen=True)
class DisclosurePolicy:
    """How a node protects the numbers it releases."""

    min_count: int = 10
    rounding: int = 10
    noise: QueryNoise | None = None

    def protect(self, value: int, *, query: QueryKey | None = None, label: str = "") -> Protected:
        """A count as it may be released; with noise on, ``query`` (and ``label``, naming the
        measure) seed its offset."""
        if self.noise is not None:
            if query is None:
                raise DisclosureError("noise is enabled: protect() needs the query it answers")
            value += self.noise.offset(query, label)
        if value < self.min_count:
            return f"<{self.min_count}"
        rounded = round(value / self.rounding) * self.rounding
        return max(rounded, self.min_count)

    def protect_totals(
        self, totals: Mapping[str, int], *, query: QueryKey | None = None
    ) -> dict[str, Protected]:
        """Patients/studies/series/instances protected; bytes to megabytes unless patients are
        suppressed."""
        protected: dict[str, Protected] = {
            name: self.protect(totals[name], query=query, label=name) for name in _COUNTS
        }
        suppressed = isinstance(protected["patients"], str)
        protected["bytes"] = f"<{self.min_count}" if suppressed else round(totals["bytes"], -6)
        return protected

    def protect_collection(self, totals: Mapping[str, Any]) -> dict[str, Protected]:
        """A collection's totals, noise seeded as a cohort query for that collection is (so
        asking either way gives the same numbers)."""
        return self.protect_totals(totals, query={"collection": [totals["collection_id"]]})

    def protect_result(self, result: CohortResult) -> dict[str, Any]:
        """A cohort answer with every count protected (noise seeded by its canonical filter);
        facet values whose patients are suppressed are left out."""
        query = result.filter
        facets: dict[str, list[dict[str, Any]]] = {}
        for name, buckets in result.facets.items():
            facets[name] = []
            for b in buckets:
                label = f"facet:{name}:{b.value}"
                patients = self.protect(b.patients, query=query, label=f"{label}:patients")
                if isinstance(patients, str):
                    continue
                series = self.protect(b.series, query=query, label=f"{label}:series")
                facets[name].append({"value": b.value, "patients": patients, "series": series})
        return {
            "filter": result.filter,
            "protected": True,
            "counts": self.protect_totals(asdict(result.counts), query=query),
            "facets": facets,
            "elapsed_ms": result.elapsed_ms,
        }


def node_policy(settings: NodeSettings, node_secret: bytes) -> DisclosurePolicy:
    """The policy of a node's settings. With ``count_noise_scale`` > 0 its noise is keyed by a
    secret derived from the node's key, so answers stay the same across restarts."""
    noise = None
    if settings.count_noise_scale > 0:
        secret = hmac.digest(node_secret, NOISE_KEY_DOMAIN, "sha256")
        scale = settings.count_noise_scale
        noise = QueryNoise(secret, scale, bound=math.ceil(NOISE_BOUND_SCALES * scale))
    return DisclosurePolicy(settings.min_count, settings.count_rounding, noise)


class QueryBudget:
    """At most ``per_day`` queries per user per UTC day, counted in an SQLite file."""

    def __init__(
        self,
        path: Path,
        per_day: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        place: str = "this node",
    ) -> None:
        if per_day < 1:
            raise ConfigError(f"the daily query budget must be >= 1, got {per_day}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.per_day, self.place = per_day, place
        self._clock = clock
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")  # survives a crashed process; no fsync
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS query_budget (user_id TEXT NOT NULL, day TEXT NOT NULL,"
            " used INTEGER NOT NULL, PRIMARY KEY (user_id, day))"
        )

    def _day(self) -> str:
        return self._clock().astimezone(UTC).date().isoformat()

    def charge(self, user_id: str) -> int:
        """Count one query for ``user_id``; returns how many remain today, or raises
        :class:`QueryBudgetError` when none did."""
        day = self._day()
        with self._lock:
            self._con.execute("DELETE FROM query_budget WHERE day < ?", [day])
            charged = self._con.execute(
                "INSERT INTO query_budget (user_id, day, used) VALUES (?, ?, 1)"
                " ON CONFLICT (user_id, day) DO UPDATE SET used = used + 1 WHERE used < ?",
                [user_id, day, self.per_day],
            ).rowcount
        if charged == 0:
            tomorrow = datetime.fromisoformat(day) + timedelta(days=1)
            raise QueryBudgetError(
                f"user {user_id!r} has used all {self.per_day} queries allowed per day on"
                f" {self.place}; the budget resets at {tomorrow:%Y-%m-%d} 00:00 UTC"
            )
        return self.remaining(user_id)

    def remaining(self, user_id: str) -> int:
        """Queries ``user_id`` may still make today."""
        with self._lock:
            row = self._con.execute(
                "SELECT used FROM query_budget WHERE user_id = ? AND day = ?",
                [user_id, self._day()],
            ).fetchone()
        return self.per_day - (int(row[0]) if row else 0)

    def close(self) -> None:
        """Close the database."""
        self._con.close()

    def __enter__(self) -> QueryBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
