"""The shapes a report and a leaderboard are rendered from (all JSON-safe).

A report is made from :class:`ReportInput`: the identity of the benchmark and the algorithm,
the *released* result of each node (what :func:`oncofed.tef.evaluate.evaluate_at_node`
returns, after :mod:`oncofed.tef.release`), and optionally the hub's pooled result
(``PooledBinary.to_dict()`` or ``PooledOrdinal.to_dict()``). Nothing else is needed, so a report
can be rebuilt at the hub from what nodes sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

from oncofed.errors import OncofedError


class ReportError(OncofedError):
    """A report cannot be made from this input, or exported."""

    code = "report_error"


class BenchmarkRef(TypedDict):
    """Which benchmark, exactly."""

    id: str
    version: str
    sha256: str


class AlgorithmRef(TypedDict):
    """Which algorithm package, exactly."""

    name: str
    version: str
    sha256: str


class ReportInput(TypedDict):
    """Everything a run report shows."""

    title: str
    synthetic: bool
    """Shows a banner: the figures describe generated data, not patients."""
    generated_at: str
    """ISO 8601, UTC."""
    task: str
    """``binary``, ``ordinal`` or ``multiclass``."""
    primary_metric: str
    benchmark: BenchmarkRef
    algorithm: AlgorithmRef
    nodes: list[dict[str, Any]]
    """Released node results, one per node (``status: completed``)."""
    pooled: dict[str, Any] | None
    """The hub's pooled result across ``nodes``, if any."""


class LeaderboardEntry(TypedDict):
    """One algorithm's standing on a benchmark."""

    algorithm: str
    version: str
    sha256: str
    value: float
    ci: list[float] | None
    nodes: int
    """How many nodes contributed."""
    cases: int | str
    """Cases across those nodes (a protected count)."""
    date: str
    """ISO 8601 date of the run."""


def report_input(
    nodes: Sequence[Mapping[str, Any]],
    pooled: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
    synthetic: bool = False,
) -> ReportInput:
    """A report of completed node results of one benchmark and one algorithm."""
    if not nodes:
        raise ReportError("a report needs at least one node result")
    first = nodes[0]
    for node in nodes:
        if node.get("status") != "completed":
            raise ReportError(f"node {node.get('node')!r} did not complete: {node.get('status')!r}")
        for key in ("benchmark", "algorithm", "task", "primary_metric"):
            if node[key] != first[key]:
                raise ReportError(f"node {node.get('node')!r} ran a different {key}:"
                                  f" {node[key]!r}, not {first[key]!r}")  # fmt: skip
    benchmark, algorithm = first["benchmark"], first["algorithm"]
    default_title = (
        f"{algorithm['name']} {algorithm['version']} on {benchmark['id']} {benchmark['version']}"
    )
    return ReportInput(
        title=title or default_title,
        synthetic=synthetic,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        task=first["task"],
        primary_metric=first["primary_metric"],
        benchmark=BenchmarkRef(id=benchmark["id"], version=benchmark["version"],
                               sha256=benchmark["sha256"]),
        algorithm=AlgorithmRef(name=algorithm["name"], version=algorithm["version"],
                               sha256=algorithm["sha256"]),
        nodes=[dict(n) for n in nodes],
        pooled=None if pooled is None else dict(pooled),
    )  # fmt: skip
