"""The evaluation facility at the hub: benchmarks, submitted algorithms, runs and leaderboards.

An admin registers a benchmark (a versioned spec) with the nodes that take part. An AI provider
submits an algorithm package (a zip): the hub unpacks it under its home, checks it and dry-runs it
in the sandbox, so a broken package is refused before any node sees it. A run sends the package
with the spec to every node of the benchmark as one ``tef.evaluate`` broker job; each node
evaluates in its own sandbox and answers with its *released* result (case-level predictions stay
at the node). Once every task is final the hub pools the nodes' aggregates (a pooled AUROC from
score histograms with its error bound, or kappa from summed confusion matrices), keeps the run's
outcome, and serves it as JSON, as an HTML report, and on the benchmark's leaderboard.

Layout under the hub home::

    tef/algorithms/<sha256>/       unpacked package (what was validated)
    tef/algorithms/<sha256>.zip    the archive nodes receive
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from oncofed.access.policy import Principal, Role
from oncofed.errors import ConflictError, ForbiddenError, NotFoundError, QueryError
from oncofed.hub.broker import DONE, FINAL, Task
from oncofed.hub.service import Hub
from oncofed.hub.signing import MAX_ENVELOPE_BYTES
from oncofed.storage.atomic import write_atomic
from oncofed.tef import metrics
from oncofed.tef.algorithm import AlgorithmPackage, unpack_package, validate_package
from oncofed.tef.evaluate import check_compatible
from oncofed.tef.report import LeaderboardEntry, render_leaderboard, render_report, report_input
from oncofed.tef.report.html import LOWER_IS_BETTER
from oncofed.tef.report.model import BenchmarkRef
from oncofed.tef.sandbox import Limits
from oncofed.tef.spec import BenchmarkSpec, parse_spec
from oncofed.tef.spec import Task as TaskKind

ALGORITHMS_DIR = Path("tef") / "algorithms"
# A run's task carries the zip in base64 inside one signed message, next to the spec.
MAX_PACKAGE_BYTES = (MAX_ENVELOPE_BYTES - 256 * 1024) * 3 // 4
VALIDATION_LIMITS = Limits(memory_mb=2048, cpu_seconds=120, wall_seconds=180)
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
# How long a node may evaluate before its task is delivered again (once: a node that crashed
# mid-run gets it back when it returns; one still working runs it twice, the first answer wins).
EVALUATION_LEASE = timedelta(hours=2)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tef_benchmark (
        benchmark_id VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        spec VARCHAR NOT NULL,
        nodes VARCHAR NOT NULL,
        registered_by VARCHAR NOT NULL,
        registered_at TIMESTAMP NOT NULL,
        PRIMARY KEY (benchmark_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS tef_algorithm (
        sha256 VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        submitted_by VARCHAR NOT NULL,
        submitted_at TIMESTAMP NOT NULL,
        validation VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tef_run (
        run_id VARCHAR PRIMARY KEY,
        benchmark_id VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        algorithm VARCHAR NOT NULL,
        job_id VARCHAR NOT NULL,
        submitted_by VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        leaderboard BOOLEAN NOT NULL,
        state VARCHAR NOT NULL,
        outcome VARCHAR
    )""",
)


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark and the nodes that take part."""

    spec: BenchmarkSpec
    nodes: tuple[str, ...]
    registered_by: str
    registered_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the spec, its hash and the nodes."""
        return {"id": self.spec.id, "version": self.spec.version, "sha256": self.spec.sha256,
                "title": self.spec.title, "task": self.spec.task.value,
                "primary_metric": self.spec.primary_metric, "synthetic": self.spec.synthetic,
                "nodes": list(self.nodes), "registered_by": self.registered_by,
                "registered_at": self.registered_at.isoformat(),
                "spec": self.spec.model_dump(mode="json")}  # fmt: skip


def is_overseer(who: Principal) -> bool:
    """Admins see every run and package."""
    return Role.ADMIN in who.roles


def _require(who: Principal, *roles: Role) -> None:
    if not any(role in who.roles for role in roles):
        names = " or ".join(r.value for r in roles)
        raise ForbiddenError(f"user {who.user_id!r} needs the role {names} for this")


class Facility:
    """Benchmarks, algorithms and runs of one hub (see the module docstring)."""

    def __init__(self, hub: Hub, *, validation_limits: Limits = VALIDATION_LIMITS) -> None:
        self.hub = hub
        self.limits = validation_limits
        self.algorithms_dir = hub.home / ALGORITHMS_DIR
        with hub.lock:
            for statement in _SCHEMA:
                hub.con.execute(statement)

    # -- benchmarks --------------------------------------------------------------------------

    def register_benchmark(
        self, spec_data: Mapping[str, Any], nodes: Sequence[str], who: Principal
    ) -> Benchmark:
        """Register a spec (admin) for approved ``nodes``; a version is registered once."""
        _require(who, Role.ADMIN)
        spec = parse_spec(dict(spec_data), source="benchmark")
        unknown = sorted(set(nodes) - set(self.hub.registry.approved()))
        if not nodes or unknown:
            raise QueryError(f"a benchmark names approved nodes; not approved: {unknown}")
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.hub.lock:
            if self._benchmark_row(spec.id, spec.version) is not None:
                raise ConflictError(f"benchmark {spec.key} is registered; raise the version")
            self.hub.con.execute(
                "INSERT INTO tef_benchmark VALUES (?, ?, ?, ?, ?, ?, ?)",
                [spec.id, spec.version, spec.sha256, spec.canonical_json(),
                 json.dumps(sorted(set(nodes))), who.user_id, now],
            )  # fmt: skip
        self.hub.audit(who.user_id, "tef.benchmark.register", f"benchmark/{spec.key}",
                       {"sha256": spec.sha256, "nodes": sorted(set(nodes))})  # fmt: skip
        return self.benchmark(spec.id, spec.version)

    def benchmark(self, benchmark_id: str, version: str) -> Benchmark:
        """One registered benchmark."""
        with self.hub.lock:
            row = self._benchmark_row(benchmark_id, version)
        if row is None:
            raise NotFoundError(f"no benchmark {benchmark_id}@{version} at this hub")
        return _benchmark(row)

    def benchmarks(self) -> list[Benchmark]:
        """Every registered benchmark, by id and version."""
        with self.hub.lock:
            rows = self.hub.con.execute(
                "SELECT spec, nodes, registered_by, registered_at FROM tef_benchmark"
                " ORDER BY benchmark_id, version"
            ).fetchall()
        return [_benchmark(row) for row in rows]

    def _benchmark_row(self, benchmark_id: str, version: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.hub.con.execute(
            "SELECT spec, nodes, registered_by, registered_at FROM tef_benchmark"
            " WHERE benchmark_id = ? AND version = ?",
            [benchmark_id, version],
        ).fetchone()
        return row

    # -- algorithms --------------------------------------------------------------------------

    def submit_algorithm(self, archive: bytes, who: Principal) -> dict[str, Any]:
        """Unpack, check and dry-run a package (AI provider or admin); returns its record.
        Submitting the same content again returns the existing record."""
        _require(who, Role.AI_PROVIDER, Role.ADMIN)
        if len(archive) > MAX_PACKAGE_BYTES:
            raise QueryError(f"package archive of {len(archive)} bytes is over the"
                             f" {MAX_PACKAGE_BYTES} a run can carry to the nodes")  # fmt: skip
        package = unpack_package(archive, self.algorithms_dir, None)
        existing = self._algorithm_row(package.sha256)
        if existing is not None:
            return existing
        report = validate_package(package.root, limits=self.limits)
        write_atomic(self.algorithms_dir / f"{package.sha256}.zip", archive)
        info = package.manifest.algorithm
        validation = {"graph": report.graph, "dry_run_output_shape": list(report.dry_run_shape),
                      "isolation": report.isolation, "seconds": report.seconds}  # fmt: skip
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.hub.lock:
            self.hub.con.execute(
                "INSERT INTO tef_algorithm VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [package.sha256, info.name, info.version, info.kind, who.user_id, now,
                 json.dumps(validation)],
            )  # fmt: skip
        self.hub.audit(who.user_id, "tef.algorithm.submit", f"algorithm/{package.sha256}",
                       {"name": info.name, "version": info.version})  # fmt: skip
        record = self._algorithm_row(package.sha256)
        assert record is not None
        return record

    def algorithms(self, who: Principal) -> list[dict[str, Any]]:
        """Your submitted algorithms (an admin sees all)."""
        with self.hub.lock:
            rows = self.hub.con.execute(_ALGORITHM_SELECT + " ORDER BY submitted_at").fetchall()
        records = [_algorithm(row) for row in rows]
        return [r for r in records if is_overseer(who) or r["submitted_by"] == who.user_id]

    def _algorithm_row(self, sha256: str) -> dict[str, Any] | None:
        with self.hub.lock:
            row = self.hub.con.execute(_ALGORITHM_SELECT + " WHERE sha256 = ?", [sha256]).fetchone()
        return None if row is None else _algorithm(row)

    def _package(self, sha256: str, who: Principal) -> tuple[AlgorithmPackage, bytes]:
        record = self._algorithm_row(sha256)
        if record is None or not (is_overseer(who) or record["submitted_by"] == who.user_id):
            raise NotFoundError(f"no algorithm {sha256} submitted by {who.user_id!r}")
        archive = (self.algorithms_dir / f"{sha256}.zip").read_bytes()
        return unpack_package(archive, self.algorithms_dir, sha256), archive

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self,
        benchmark_id: str,
        version: str,
        algorithm: str,
        who: Principal,
        *,
        deadline: timedelta = timedelta(hours=6),
        leaderboard: bool = True,
    ) -> str:
        """Send the algorithm to every node of the benchmark; returns the run id. Call on the
        hub's event loop (the broker wakes the nodes' polls)."""
        _require(who, Role.AI_PROVIDER, Role.ADMIN)
        bench = self.benchmark(benchmark_id, version)
        package, archive = self._package(algorithm, who)
        check_compatible(bench.spec, package)
        body = {"benchmark": bench.spec.model_dump(mode="json"),
                "algorithm": {"sha256": package.sha256,
                              "package_zip": base64.b64encode(archive).decode()},
                "user": who.user_id}  # fmt: skip
        job_id = self.hub.broker.submit(
            "tef.evaluate", body, list(bench.nodes), created_by=who.user_id, deadline=deadline,
            max_attempts=2, lease=EVALUATION_LEASE,
        )  # fmt: skip
        run_id = uuid.uuid4().hex
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.hub.lock:
            self.hub.con.execute(
                "INSERT INTO tef_run VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [run_id, benchmark_id, version, package.sha256, job_id, who.user_id, now,
                 leaderboard, RUNNING],
            )  # fmt: skip
        self.hub.audit(who.user_id, "tef.run.start", f"run/{run_id}",
                       {"benchmark": bench.spec.key, "algorithm": package.sha256,
                        "nodes": list(bench.nodes)})  # fmt: skip
        return run_id

    def run(self, run_id: str, who: Principal) -> dict[str, Any]:
        """A run as its submitter (or an admin) sees it: per-node progress while it runs; the
        released node results, failures and the pooled result once every node is final."""
        row = self._run_row(run_id)
        if row is None or not (is_overseer(who) or row["submitted_by"] == who.user_id):
            raise NotFoundError(f"no run {run_id} of {who.user_id!r}")
        if row["state"] != RUNNING:
            return dict(row["outcome"])
        tasks = self.hub.broker.tasks(row["job_id"])
        if all(t.state in FINAL for t in tasks):
            return self._finish(row, tasks)
        return {**_run_head(row), "state": RUNNING,
                "progress": {t.node_id: t.state for t in tasks}}  # fmt: skip

    def report_html(self, run_id: str, who: Principal) -> str:
        """The run's HTML report (a run where at least one node completed)."""
        outcome = self.run(run_id, who)
        if outcome["state"] != COMPLETED:
            raise ConflictError(f"run {run_id} is {outcome['state']}: no report")
        bench = self.benchmark(outcome["benchmark"]["id"], outcome["benchmark"]["version"])
        data = report_input(outcome["nodes"], outcome["pooled"], synthetic=bench.spec.synthetic)
        return render_report(data)

    def leaderboard(self, benchmark_id: str, version: str) -> list[LeaderboardEntry]:
        """Completed, listed runs of a benchmark by their pooled primary metric, best first."""
        bench = self.benchmark(benchmark_id, version)
        with self.hub.lock:
            rows = self.hub.con.execute(
                "SELECT outcome FROM tef_run WHERE benchmark_id = ? AND version = ?"
                " AND state = ? AND leaderboard ORDER BY created_at",
                [benchmark_id, version, COMPLETED],
            ).fetchall()
        metric = bench.spec.primary_metric
        entries = [e for r in rows if (e := _entry(json.loads(r[0]), metric)) is not None]
        return sorted(entries, key=lambda e: e["value"], reverse=metric not in LOWER_IS_BETTER)

    def leaderboard_html(self, benchmark_id: str, version: str) -> str:
        """The leaderboard as a page."""
        bench = self.benchmark(benchmark_id, version)
        ref = BenchmarkRef(id=bench.spec.id, version=bench.spec.version, sha256=bench.spec.sha256)
        entries = self.leaderboard(benchmark_id, version)
        return render_leaderboard(ref, bench.spec.primary_metric, entries)

    def _run_row(self, run_id: str) -> dict[str, Any] | None:
        with self.hub.lock:
            row = self.hub.con.execute(
                "SELECT run_id, benchmark_id, version, algorithm, job_id, submitted_by,"
                " created_at, leaderboard, state, outcome FROM tef_run WHERE run_id = ?",
                [run_id],
            ).fetchone()
        if row is None:
            return None
        keys = ("run_id", "benchmark_id", "version", "algorithm", "job_id", "submitted_by",
                "created_at", "leaderboard", "state", "outcome")  # fmt: skip
        record = dict(zip(keys, row, strict=True))
        record["outcome"] = json.loads(row[-1]) if row[-1] else None
        return record

    def _finish(self, row: Mapping[str, Any], tasks: Sequence[Task]) -> dict[str, Any]:
        """Pool what the nodes released and keep the outcome (once: a concurrent caller's
        identical outcome is discarded)."""
        bench = self.benchmark(row["benchmark_id"], row["version"])
        completed, failures = _split(tasks)
        pooled, left_out = _pool(bench.spec, completed)
        outcome = {**_run_head(row), "state": COMPLETED if completed else FAILED,
                   "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                   "nodes": completed, "failures": failures, "pooled": pooled,
                   "pooled_without": left_out}  # fmt: skip
        with self.hub.lock:
            first = self.hub.con.execute(
                "UPDATE tef_run SET state = ?, outcome = ? WHERE run_id = ? AND state = ?"
                " RETURNING run_id",
                [outcome["state"], json.dumps(outcome), row["run_id"], RUNNING],
            ).fetchall()
        if first:  # audited by the caller whose outcome was kept
            self.hub.audit("system", "tef.run.finish", f"run/{row['run_id']}",
                           {"state": outcome["state"], "failures": failures})  # fmt: skip
        stored = self._run_row(row["run_id"])
        assert stored is not None and stored["outcome"] is not None
        return dict(stored["outcome"])


_ALGORITHM_SELECT = (
    "SELECT sha256, name, version, kind, submitted_by, submitted_at, validation FROM tef_algorithm"
)


def _benchmark(row: Sequence[Any]) -> Benchmark:
    spec = parse_spec(json.loads(row[0]), source="stored benchmark")
    return Benchmark(spec, tuple(json.loads(row[1])), row[2], row[3].replace(tzinfo=UTC))


def _algorithm(row: Sequence[Any]) -> dict[str, Any]:
    return {"sha256": row[0], "name": row[1], "version": row[2], "kind": row[3],
            "submitted_by": row[4], "submitted_at": row[5].replace(tzinfo=UTC).isoformat(),
            "validation": json.loads(row[6])}  # fmt: skip


def _run_head(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"run_id": row["run_id"], "algorithm": row["algorithm"],
            "benchmark": {"id": row["benchmark_id"], "version": row["version"]},
            "submitted_by": row["submitted_by"], "leaderboard": row["leaderboard"],
            "created_at": row["created_at"].replace(tzinfo=UTC).isoformat()}  # fmt: skip


def _split(tasks: Sequence[Task]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Completed node results, and why each other node has none."""
    completed: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for task in sorted(tasks, key=lambda t: t.node_id):
        result = task.result or {}
        if task.state == DONE and result.get("status") == "completed":
            completed.append({**result, "node": task.node_id})
        elif task.state == DONE:
            failure = result.get("failure") or {}
            failures[task.node_id] = f"{failure.get('reason')}: {failure.get('detail')}"
        else:
            failures[task.node_id] = task.error or f"task {task.state}"
    return completed, failures


def _pool(
    spec: BenchmarkSpec, completed: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The pooled result from the released aggregates, and the nodes left out with why."""
    usable, left_out = [], {}
    for result in completed:
        aggregate = result.get("aggregate") or {}
        if "withheld" in aggregate:
            left_out[result["node"]] = str(aggregate["withheld"])
        else:
            usable.append(aggregate)
    if not usable:
        return None, left_out
    alpha = 1 - spec.ci_level
    if spec.task is TaskKind.BINARY:
        aggs = [metrics.BinaryAggregate.from_dict(a) for a in usable]
        pooled = metrics.pool_binary(aggs, n_bootstrap=spec.n_bootstrap, alpha=alpha)
        return pooled.to_dict(), left_out
    ordinal = [metrics.OrdinalAggregate.from_dict(a) for a in usable]
    return metrics.pool_ordinal(
        ordinal, n_bootstrap=spec.n_bootstrap, alpha=alpha
    ).to_dict(), left_out


def _entry(outcome: Mapping[str, Any], metric: str) -> LeaderboardEntry | None:
    """A leaderboard row from a completed run's pooled primary metric (None if not pooled)."""
    pooled = outcome.get("pooled") or {}
    estimate = pooled.get(metric)
    if not isinstance(estimate, dict) or estimate.get("value") is None:
        return None
    algorithm = outcome["nodes"][0]["algorithm"]
    return LeaderboardEntry(
        algorithm=algorithm["name"], version=algorithm["version"], sha256=algorithm["sha256"],
        value=float(estimate["value"]), ci=estimate.get("ci"), nodes=int(pooled["nodes"]),
        cases=pooled.get("cases", "?"), date=str(outcome["finished_at"])[:10],
    )  # fmt: skip
