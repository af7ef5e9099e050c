"""Disclosure control for evaluation results: what of a run may leave the node.

Every count passes the node's :class:`~oncofed.disclosure.DisclosurePolicy` (below k suppressed
as ``"<k"``, the rest rounded; with noise on, seeded by the benchmark identity and the count's
place in the result, so a repeated run releases the same numbers). On top of that:

* a metric of the whole cohort or of a subgroup is **withheld** when it rests on fewer than k
  cases, or (binary tasks) fewer than k positives or k negatives: only its protected case count
  and the reason leave;
* a released metric keeps its exact value and interval, but its counts (cases, positives,
  negatives, confusion counts at operating points, confusion matrix cells) are protected, and
  reliability-curve bins with fewer than k cases are left out;
* **pooling aggregates** must let the hub pool exactly, so they carry exact counts, but never of
  fewer than k cases of a class in one place. A binary histogram needs at least k positives and
  k negatives, and adjacent bins are merged until every released group holds, per class, either
  no case or at least k; merging only widens the hub's pooling bound, which the pooled result
  reports. A confusion matrix leaves only if every true class has no case or at least k (a class
  with cases is then described by at least k of them). Otherwise the aggregate is withheld and
  the hub pools without this node, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oncofed.disclosure import DisclosurePolicy, Protected
from oncofed.tef.metrics import BinaryAggregate, OrdinalAggregate
from oncofed.tef.metrics.pooling import BINARY_KIND, ORDINAL_KIND, Group

_CONFUSION = ("true_positives", "false_positives", "true_negatives", "false_negatives")


class _Protector:
    """The policy bound to one run: noise (if on) is seeded by the benchmark and the label."""

    def __init__(self, policy: DisclosurePolicy, query: Mapping[str, Any]) -> None:
        self.policy = policy
        self.query = query

    @property
    def k(self) -> int:
        return self.policy.min_count

    def __call__(self, value: int, label: str) -> Protected:
        return self.policy.protect(value, query=self.query, label=label)


def _too_few(entry: Mapping[str, Any], k: int) -> bool:
    counts: list[int] = [entry["cases"], entry.get("positives", k), entry.get("negatives", k)]
    return min(counts) < k


def _protect_point(point: Mapping[str, Any], protect: _Protector, label: str) -> dict[str, Any]:
    where = f"{label}.threshold_{point['threshold']}"
    return {**point, **{c: protect(point[c], f"{where}.{c}") for c in _CONFUSION}}


def release_metrics(entry: Mapping[str, Any], protect: _Protector, label: str) -> dict[str, Any]:
    """One metrics entry (a ``to_dict()`` of a result, with ``cases``) as it may leave."""
    cases = protect(entry["cases"], f"{label}.cases")
    if "withheld" in entry:
        return {"cases": cases, "withheld": entry["withheld"]}
    if _too_few(entry, protect.k):
        reason = f"fewer than {protect.k} cases" + (" of a class" if "positives" in entry else "")
        return {"cases": cases, "withheld": reason}
    released = {**entry, "cases": cases}
    for key in ("positives", "negatives"):
        if key in entry:
            released[key] = protect(entry[key], f"{label}.{key}")
    if "operating_points" in entry:
        released["operating_points"] = [
            _protect_point(point, protect, label) for point in entry["operating_points"]
        ]
    if "reliability" in entry:
        released["reliability"] = [
            {**b, "cases": protect(b["cases"], f"{label}.reliability.{b['lower']}")}
            for b in entry["reliability"]
            if b["cases"] >= protect.k
        ]
    if "confusion_matrix" in entry:
        released["confusion_matrix"] = [
            [protect(cell, f"{label}.confusion.{i}.{j}") for j, cell in enumerate(row)]
            for i, row in enumerate(entry["confusion_matrix"])
        ]
    return released


def _releasable(group: Group, k: int) -> bool:
    return all(count == 0 or count >= k for count in group[2:])


def _merge(first: Group, second: Group) -> Group:
    return (first[0], second[1], first[2] + second[2], first[3] + second[3])


def coarsen(aggregate: BinaryAggregate, k: int) -> BinaryAggregate:
    """Merge adjacent groups until each holds, per class, no case or at least ``k`` (the caller
    makes sure each class has at least ``k`` in all)."""
    merged: list[Group] = []
    pending: Group | None = None
    for group in aggregate.groups:
        pending = group if pending is None else _merge(pending, group)
        if _releasable(pending, k):
            merged.append(pending)
            pending = None
    if pending is not None:
        merged.append(pending)
    while len(merged) > 1 and not _releasable(merged[-1], k):
        last = merged.pop()
        merged[-1] = _merge(merged[-1], last)
    return BinaryAggregate(aggregate.bins, tuple(merged))


def release_aggregate(aggregate: Mapping[str, Any], k: int) -> dict[str, Any]:
    """A pooling aggregate as it may leave: coarsened, or withheld with the reason."""
    if aggregate.get("kind") == BINARY_KIND:
        histogram = BinaryAggregate.from_dict(aggregate)
        if min(histogram.positives, histogram.negatives) < k:
            return {"kind": BINARY_KIND, "withheld": f"fewer than {k} cases of a class"}
        return coarsen(histogram, k).to_dict()
    matrix = OrdinalAggregate.from_dict(aggregate)
    if any(0 < sum(row) < k for row in matrix.matrix):
        return {"kind": ORDINAL_KIND, "withheld": f"a class has between 1 and {k - 1} cases"}
    return matrix.to_dict()


def release_evaluation(result: Mapping[str, Any], policy: DisclosurePolicy) -> dict[str, Any]:
    """A node's evaluation result with every count protected, small groups withheld and
    pooling aggregates made safe; the input is not changed."""
    protect = _Protector(policy, result["benchmark"])
    data = result["data"]
    released: dict[str, Any] = {
        **result,
        "data": {
            "cases": protect(data["cases"], "data.cases"),
            "per_class": {
                c: protect(n, f"data.per_class.{c}") for c, n in data["per_class"].items()
            },
            "excluded": {r: protect(n, f"data.excluded.{r}") for r, n in data["excluded"].items()},
        },
        "predictions": {
            **result["predictions"],
            "cases": protect(result["predictions"]["cases"], "predictions.cases"),
        },
        "metrics": release_metrics(result["metrics"], protect, "metrics"),
        "subgroups": {
            key: {
                value: release_metrics(entry, protect, f"subgroups.{key}.{value}")
                for value, entry in groups.items()
            }
            for key, groups in result["subgroups"].items()
        },
        "aggregate": release_aggregate(result["aggregate"], policy.min_count),
        "disclosure": {
            "min_count": policy.min_count,
            "rounding": policy.rounding,
            "noise": policy.noise is not None,
        },
    }
    return released
