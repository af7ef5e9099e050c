"""Paired comparisons at the hub: is algorithm A's AUROC better than B's on the same cases?

Two completed runs of one binary benchmark are compared node by node: each node that completed
both runs answers a ``tef.compare`` task with its paired DeLong test on its own stored
predictions (:mod:`oncofed.tef.compare`), and the hub combines the nodes' differences by
inverse-variance weighting. Like runs, a comparison is kept once every node is final.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from oncofed.access.policy import Principal
from oncofed.errors import NotFoundError, QueryError
from oncofed.hub.broker import DONE, FINAL, Task
from oncofed.hub.facility import COMPLETED, FAILED, RUNNING, Facility, is_overseer
from oncofed.tef.compare import combine
from oncofed.tef.spec import Task as TaskKind

COMPARISON_DEADLINE = timedelta(hours=1)
_SCHEMA = """CREATE TABLE IF NOT EXISTS tef_comparison (
    comparison_id VARCHAR PRIMARY KEY,
    run_a VARCHAR NOT NULL,
    run_b VARCHAR NOT NULL,
    job_id VARCHAR NOT NULL,
    submitted_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    state VARCHAR NOT NULL,
    outcome VARCHAR
)"""


class Comparisons:
    """Paired comparisons of the runs of one facility."""

    def __init__(self, facility: Facility) -> None:
        self.facility = facility
        self.hub = facility.hub
        with self.hub.lock:
            self.hub.con.execute(_SCHEMA)

    def start(self, run_a: str, run_b: str, who: Principal) -> str:
        """Ask every node that completed both runs (which the caller may read) for its paired
        test; returns the comparison id. Call on the hub's event loop."""
        first, second = self.facility.run(run_a, who), self.facility.run(run_b, who)
        if first["state"] != COMPLETED or second["state"] != COMPLETED:
            raise QueryError("compare completed runs only")
        if first["benchmark"] != second["benchmark"]:
            raise QueryError(f"runs of different benchmarks: {first['benchmark']} and"
                             f" {second['benchmark']}")  # fmt: skip
        bench = self.facility.benchmark(first["benchmark"]["id"], first["benchmark"]["version"])
        if bench.spec.task is not TaskKind.BINARY:
            raise QueryError(f"{bench.spec.key} is not a binary task: DeLong compares AUROCs")
        pairs = _node_pairs(first["nodes"], second["nodes"])
        if not pairs:
            raise QueryError("no node completed both runs")
        body = {"benchmark": bench.spec.model_dump(mode="json"), "runs": pairs,
                "user": who.user_id}  # fmt: skip
        job_id = self.hub.broker.submit(
            "tef.compare", body, sorted(pairs), created_by=who.user_id,
            deadline=COMPARISON_DEADLINE,
        )  # fmt: skip
        comparison_id = uuid.uuid4().hex
        with self.hub.lock:
            self.hub.con.execute(
                "INSERT INTO tef_comparison VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                [comparison_id, run_a, run_b, job_id, who.user_id,
                 datetime.now(UTC).replace(tzinfo=None), RUNNING],
            )  # fmt: skip
        self.hub.audit(who.user_id, "tef.compare.start", f"comparison/{comparison_id}",
                       {"runs": [run_a, run_b], "nodes": sorted(pairs)})  # fmt: skip
        return comparison_id

    def get(self, comparison_id: str, who: Principal) -> dict[str, Any]:
        """Progress, or per-node paired tests and their combination once all are final."""
        with self.hub.lock:
            row = self.hub.con.execute(
                "SELECT run_a, run_b, job_id, submitted_by, state, outcome FROM tef_comparison"
                " WHERE comparison_id = ?",
                [comparison_id],
            ).fetchone()
        if row is None or not (is_overseer(who) or row[3] == who.user_id):
            raise NotFoundError(f"no comparison {comparison_id} of {who.user_id!r}")
        if row[4] != RUNNING:
            return dict(json.loads(row[5]))
        head = {"comparison_id": comparison_id, "runs": [row[0], row[1]]}
        tasks = self.hub.broker.tasks(row[2])
        if not all(t.state in FINAL for t in tasks):
            return {**head, "state": RUNNING, "progress": {t.node_id: t.state for t in tasks}}
        return self._finish(comparison_id, head, row[0], tasks, who)

    def _finish(
        self,
        comparison_id: str,
        head: Mapping[str, Any],
        run_a: str,
        tasks: Sequence[Task],
        who: Principal,
    ) -> dict[str, Any]:
        ref = self.facility.run(run_a, who)["benchmark"]
        spec = self.facility.benchmark(ref["id"], ref["version"]).spec
        nodes = [{**(t.result or {}), "node": t.node_id} for t in tasks if t.state == DONE]
        failures = {t.node_id: t.error or f"task {t.state}" for t in tasks if t.state != DONE}
        outcome = {**head, "state": COMPLETED if nodes else FAILED, "nodes": nodes,
                   "failures": failures, "combined": combine(nodes, spec.ci_level)}  # fmt: skip
        with self.hub.lock:
            self.hub.con.execute(
                "UPDATE tef_comparison SET state = ?, outcome = ? WHERE comparison_id = ?"
                " AND state = ?",
                [outcome["state"], json.dumps(outcome), comparison_id, RUNNING],
            )
            (stored,) = self.hub.con.execute(
                "SELECT outcome FROM tef_comparison WHERE comparison_id = ?", [comparison_id]
            ).fetchone() or (None,)
        return dict(json.loads(stored))


def _node_pairs(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """node -> [its run id of the first run, of the second], for nodes that completed both."""
    theirs = {n["node"]: n["run_id"] for n in second}
    return {n["node"]: [n["run_id"], theirs[n["node"]]] for n in first if n["node"] in theirs}
