"""Paired comparison of two algorithms at a node: DeLong's test on the cases both scored.

Two evaluations of the same binary benchmark at a node left their case-level predictions in the
node home; the comparison joins them by case and runs the paired DeLong test (DeLong, DeLong &
Clarke-Pearson 1988). Like an evaluation, only aggregates leave: the two AUROCs, their
difference with its interval and variance, z and p, and the protected case count; the result is
withheld when fewer than k positives or k negatives were compared. The hub combines the nodes'
differences by inverse-variance weighting (:func:`combine`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import norm

from oncofed.agent.handlers import AgentContext, handler
from oncofed.disclosure import DisclosurePolicy
from oncofed.node import Node
from oncofed.tef.evaluate import PREDICTIONS_DIR, EvaluationError, check_taking_part
from oncofed.tef.metrics import compare_binary
from oncofed.tef.spec import BenchmarkSpec, Task, parse_spec

NODE_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def _scores(node: Node, spec: BenchmarkSpec, run_id: str) -> dict[str, tuple[int, float]]:
    """case id -> (target, score) of one stored evaluation of ``spec`` at ``node``."""
    if not NODE_RUN_ID.fullmatch(run_id):
        raise EvaluationError(f"{run_id!r} is not an evaluation run id")
    path = node.home / PREDICTIONS_DIR / spec.id / spec.version / f"{run_id}.parquet"
    if not path.is_file():
        raise EvaluationError(f"no predictions of run {run_id} for {spec.key} at this node")
    table = pq.read_table(path, columns=["case_id", "target", "score"]).to_pydict()
    return {
        case: (int(target), float(score))
        for case, target, score in zip(
            table["case_id"], table["target"], table["score"], strict=True
        )
    }


def compare_at_node(
    node: Node, spec: BenchmarkSpec, run_a: str, run_b: str, policy: DisclosurePolicy
) -> dict[str, Any]:
    """The released paired comparison of two stored runs (cases scored by both)."""
    if spec.task is not Task.BINARY:
        raise EvaluationError(f"{spec.key} is a {spec.task.value} task; DeLong compares AUROCs")
    first, second = _scores(node, spec, run_a), _scores(node, spec, run_b)
    cases = sorted(first.keys() & second.keys())
    targets = np.array([first[c][0] for c in cases], dtype=np.int64)
    positives = int(targets.sum())
    query = {"benchmark": spec.key, "runs": [run_a, run_b]}
    protected = policy.protect(len(cases), query=query, label="cases")
    released: dict[str, Any] = {"node": node.settings.name, "runs": [run_a, run_b],
                                "cases": protected}  # fmt: skip
    if min(positives, len(cases) - positives) < policy.min_count:
        return {**released, "withheld": f"fewer than {policy.min_count} cases of a class"}
    result = compare_binary(
        targets,
        np.array([first[c][1] for c in cases]),
        np.array([second[c][1] for c in cases]),
        alpha=1 - spec.ci_level,
    ).to_dict()
    del result["cases"]
    return {**released, **result}


@handler("tef.compare")
def compare_task(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """A hub task: ``{"benchmark": <spec>, "runs": {<node id>: [<run a>, <run b>]}, "user"}``;
    this node compares its own pair."""
    spec = parse_spec(body.get("benchmark"), source="task benchmark")
    check_taking_part(ctx.service.node.settings, spec)
    pair = (body.get("runs") or {}).get(ctx.node_id)
    if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(r, str) for r in pair):
        raise EvaluationError(f"the task names no pair of runs for node {ctx.node_id}")
    with ctx.service.catalog():
        node = ctx.service.node
        result = compare_at_node(node, spec, pair[0], pair[1], ctx.policy)
        node.audit.append(f"hub:{body.get('user') or 'unknown'}", "tef-compare",
                          f"benchmark/{spec.key}", {"runs": pair})  # fmt: skip
    return result


def combine(comparisons: Sequence[Mapping[str, Any]], level: float) -> dict[str, Any] | None:
    """Fixed-effect (inverse-variance) combination of the nodes' AUROC differences: each node's
    difference weighted by 1 / its DeLong variance. None when no node released a difference
    with a positive variance (a variance of 0, e.g. both algorithms separating the classes
    perfectly, has no weight to give)."""
    usable = [c for c in comparisons if "withheld" not in c and c["variance"] > 0]
    if not usable:
        return None
    weights = np.array([1.0 / c["variance"] for c in usable])
    differences = np.array([c["difference"] for c in usable])
    difference = float(weights @ differences / weights.sum())
    se = math.sqrt(1.0 / float(weights.sum()))
    z = difference / se
    half = float(norm.ppf(0.5 + level / 2)) * se
    return {"method": "fixed-effect inverse-variance combination of per-node DeLong differences",
            "nodes": len(usable), "difference": difference, "variance": se**2, "z": z,
            "p_value": float(2 * norm.sf(abs(z))),
            "ci": [difference - half, difference + half]}  # fmt: skip
