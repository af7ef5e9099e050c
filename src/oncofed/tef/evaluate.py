"""Node-side evaluation: a benchmark's cases through a sandboxed algorithm to releasable metrics.

Case-level predictions never leave the node: they are written to a Parquet file under the node
home (``tef/predictions/<benchmark>/<version>/<run>.parquet``) and only its node-relative path
appears in the result. What does leave, the result dict, carries metrics with confidence
intervals overall and per subgroup, the aggregates the hub pools across nodes, and a data
summary; all of it passes :mod:`oncofed.tef.release` (disclosure control) first.
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from oncofed.agent.handlers import AgentContext, handler
from oncofed.config import NodeSettings
from oncofed.disclosure import DisclosurePolicy
from oncofed.errors import OncofedError
from oncofed.node import Node
from oncofed.storage.atomic import write_atomic
from oncofed.tef import metrics
from oncofed.tef.algorithm import (
    AlgorithmPackage,
    Manifest,
    run_algorithm,
    scores,
    unpack_package,
)
from oncofed.tef.cases import Case, CaseError, CaseSet, case_pixels, resolve_cases
from oncofed.tef.release import release_evaluation
from oncofed.tef.sandbox import AlgorithmFailed, Limits, SandboxRun
from oncofed.tef.spec import BenchmarkSpec, Task, parse_spec

PREDICTIONS_DIR = Path("tef") / "predictions"
WORK_DIR = Path("tef") / "work"
PACKAGES_DIR = Path("tef") / "packages"
DEFAULT_BATCH = 32
_MEANINGS = {
    Task.BINARY: ("probability", "class_probabilities"),
    Task.ORDINAL: ("class_probabilities", "ordinal_score"),
    Task.MULTICLASS: ("class_probabilities",),
}


class EvaluationError(OncofedError):
    """The benchmark cannot be evaluated with this algorithm at this node."""

    code = "evaluation_error"


@dataclass(frozen=True)
class EvaluationOptions:
    """How a run is carried out; none of it changes the metrics' definitions."""

    limits: Limits = field(default_factory=Limits)
    allow_network: bool = False
    batch_size: int = DEFAULT_BATCH
    seed: int = 0


@dataclass(frozen=True)
class Predictions:
    """Per-case outputs, in case order: a score (binary), a class index, class probabilities."""

    score: NDArray[np.float64] | None
    predicted: NDArray[np.int64]
    probabilities: NDArray[np.float64] | None


def check_compatible(spec: BenchmarkSpec, package: AlgorithmPackage) -> None:
    """The algorithm must take the benchmark's input and answer its task."""
    manifest = package.manifest
    problems = []
    if manifest.input.kind != spec.input.kind:
        problems.append(f"takes {manifest.input.kind} input, the benchmark gives {spec.input.kind}")
    if manifest.output.classes != len(spec.classes):
        problems.append(
            f"predicts {manifest.output.classes} classes, the benchmark has {len(spec.classes)}"
        )
    if manifest.output.meaning not in _MEANINGS[spec.task]:
        problems.append(f"output {manifest.output.meaning!r} does not answer a {spec.task} task")
    if problems:
        raise EvaluationError(f"{package.key} cannot run {spec.key}: " + "; ".join(problems))


def evaluate_at_node(
    node: Node,
    spec: BenchmarkSpec,
    package: AlgorithmPackage,
    options: EvaluationOptions | None = None,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``package`` on ``spec`` at ``node``; returns the releasable result.

    An algorithm that fails gives ``status: failed`` with the reason; the node is unchanged
    except for the audit entry (as ``actor``, default the node's CLI user) that records the run.
    """
    options = options or EvaluationOptions()
    actor = actor or node.actor
    check_compatible(spec, package)
    found = resolve_cases(node, spec)
    if not found.cases:
        raise EvaluationError(
            f"{spec.key}: no labelled cases at node {node.settings.name!r}"
            f" (left out: {dict(found.excluded) or 'none matched the cohort'})"
        )
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    header = {
        "run_id": run_id,
        "node": node.settings.name,
        "benchmark": {"id": spec.id, "version": spec.version, "sha256": spec.sha256},
        "algorithm": package.to_dict(),
        "started_at": datetime.now(UTC).isoformat(),
    }
    try:
        case_set, run, predictions = _infer(node, spec, package, found, options)
    except AlgorithmFailed as failed:
        node.audit.append(actor, "tef-evaluate", f"benchmark/{spec.key}",
                          {"run": run_id, "algorithm": package.key, "status": "failed",
                           "reason": failed.reason.value})  # fmt: skip
        failure = {"reason": failed.reason.value, "detail": failed.public_detail}
        return {**header, "status": "failed", "failure": failure}
    stored = _store_predictions(node, spec, run_id, case_set.cases, predictions)
    result = {
        **header,
        "status": "completed",
        "finished_at": datetime.now(UTC).isoformat(),
        "task": spec.task.value,
        "primary_metric": spec.primary_metric,
        "isolation": run.isolation,
        "inference_seconds": round(run.seconds, 3),
        "predictions": {"stored_at_node": stored.as_posix(), "cases": len(case_set.cases)},
        **_measure(spec, case_set, predictions, options.seed),
    }
    policy = DisclosurePolicy(node.settings.min_count, node.settings.count_rounding)
    released = release_evaluation(result, policy)
    node.audit.append(actor, "tef-evaluate", f"benchmark/{spec.key}",
                      {"run": run_id, "algorithm": package.key, "status": "completed",
                       "cases": len(case_set.cases), "predictions": stored.as_posix()})  # fmt: skip
    return released


def _batches(
    node: Node, spec: BenchmarkSpec, manifest: Manifest, found: CaseSet, kept: CaseSet,
    batch_size: int,
) -> Iterator[NDArray[Any]]:  # fmt: skip
    """Input batches, prepared as the sandbox takes them (one in memory at a time): images in
    groups of ``batch_size``, a slide's bag of tiles alone. Cases whose pixels cannot be
    prepared are left out and counted in ``kept``; the others are appended to it in order."""
    pending: list[NDArray[Any]] = []
    for case in found.cases:
        try:
            pixels = case_pixels(node, spec, manifest, case)
        except CaseError as exc:
            kept.excluded[exc.reason] += 1
            continue
        kept.cases.append(case)
        if spec.input.kind == "wsi":
            yield pixels
            continue
        pending.append(pixels)
        if len(pending) == batch_size:
            yield np.concatenate(pending)
            pending = []
    if pending:
        yield np.concatenate(pending)


def _infer(
    node: Node,
    spec: BenchmarkSpec,
    package: AlgorithmPackage,
    found: CaseSet,
    options: EvaluationOptions,
) -> tuple[CaseSet, SandboxRun, Predictions]:
    """Sandboxed inference over every usable case; one validated output row per case."""
    manifest = package.manifest
    kept = CaseSet(cases=[], excluded=Counter(found.excluded))
    run = run_algorithm(
        package,
        _batches(node, spec, manifest, found, kept, options.batch_size),
        limits=options.limits,
        allow_network=options.allow_network,
        work_root=node.home / WORK_DIR,
        hide=(node.home,),  # the work folder is bound into the sandbox before this is covered
    )
    if not kept.cases:
        raise EvaluationError(f"{spec.key}: no case's pixels could be prepared ({kept.excluded})")
    rows = [scores(manifest.output, out, len(out)) for out in run.outputs]
    if spec.input.kind == "wsi":
        combine: Callable[..., NDArray[np.float64]] = (
            np.mean if manifest.preprocessing.tile_aggregation == "mean" else np.max
        )
        rows = [combine(r, axis=0, keepdims=True) for r in rows]
    return kept, run, _predictions(spec, package, np.concatenate(rows))


def _predictions(
    spec: BenchmarkSpec, package: AlgorithmPackage, output: NDArray[np.float64]
) -> Predictions:
    meaning = package.manifest.output.meaning
    if meaning == "probability":
        return Predictions(output, (output >= 0.5).astype(np.int64), None)
    if meaning == "ordinal_score":
        top = len(spec.classes) - 1
        return Predictions(None, np.clip(np.rint(output), 0, top).astype(np.int64), None)
    score = output[:, 1] if spec.task is Task.BINARY else None
    return Predictions(score, output.argmax(axis=1).astype(np.int64), output)


def _store_predictions(
    node: Node, spec: BenchmarkSpec, run_id: str, cases: Sequence[Case], predictions: Predictions
) -> Path:
    """Write per-case predictions under the node home; returns the node-relative path."""
    columns: dict[str, Any] = {
        "case_id": [c.case_id for c in cases],
        "patient": [c.patient for c in cases],
        "label": [c.label for c in cases],
        "target": [c.target for c in cases],
        "predicted": predictions.predicted,
    }
    if predictions.score is not None:
        columns["score"] = predictions.score
    if predictions.probabilities is not None:
        for index, name in enumerate(spec.classes):
            columns[f"p_{name}"] = predictions.probabilities[:, index]
    for key in cases[0].subgroups:
        columns[key] = [c.subgroups[key] for c in cases]
    relative = PREDICTIONS_DIR / spec.id / spec.version / f"{run_id}.parquet"
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    write_atomic(node.home / relative, buffer.getvalue())
    return relative


def _measure(
    spec: BenchmarkSpec, case_set: CaseSet, predictions: Predictions, seed: int
) -> dict[str, Any]:
    """Overall and per-subgroup metrics, pooling aggregates and the data summary."""
    cases = case_set.cases
    targets = np.array([c.target for c in cases], dtype=np.int64)
    everyone = np.ones(len(cases), dtype=bool)
    subgroups: dict[str, dict[str, Any]] = {}
    for key in spec.subgroups:
        values = sorted({c.subgroups[key] for c in cases})
        subgroups[key] = {
            value: _metrics_or_reason(
                spec, targets, predictions, np.array([c.subgroups[key] == value for c in cases]),
                seed,
            )
            for value in values
        }  # fmt: skip
    return {
        "data": {
            "cases": len(cases),
            "per_class": {name: int((targets == i).sum()) for i, name in enumerate(spec.classes)},
            "excluded": dict(case_set.excluded),
        },
        "metrics": _metrics_or_reason(spec, targets, predictions, everyone, seed),
        "subgroups": subgroups,
        "aggregate": _aggregate(spec, targets, predictions),
    }


def _metrics_or_reason(
    spec: BenchmarkSpec,
    targets: NDArray[np.int64],
    predictions: Predictions,
    rows: NDArray[np.bool_],
    seed: int,
) -> dict[str, Any]:
    """Metrics of the selected cases, or why there are none (one class only, too few cases)."""
    alpha = 1.0 - spec.ci_level
    result: metrics.BinaryResult | metrics.OrdinalResult
    try:
        if spec.task is Task.BINARY:
            assert predictions.score is not None
            result = metrics.evaluate_binary(
                targets[rows], predictions.score[rows],
                operating_points=spec.operating_points, ci_method=spec.ci_method,
                n_bootstrap=spec.n_bootstrap, alpha=alpha, seed=seed,
            )  # fmt: skip
        else:
            result = metrics.evaluate_ordinal(
                targets[rows], predictions.predicted[rows], n_classes=len(spec.classes),
                n_bootstrap=spec.n_bootstrap, alpha=alpha, seed=seed,
            )  # fmt: skip
    except OncofedError as exc:
        return {"cases": int(rows.sum()), "withheld": exc.message}
    return {"cases": int(rows.sum()), **result.to_dict()}


def _aggregate(
    spec: BenchmarkSpec, targets: NDArray[np.int64], predictions: Predictions
) -> dict[str, Any]:
    """What the hub pools across nodes: score histograms (binary) or a confusion matrix."""
    if spec.task is Task.BINARY:
        assert predictions.score is not None
        return metrics.binary_aggregate(targets, predictions.score).to_dict()
    return metrics.ordinal_aggregate(
        targets, predictions.predicted, n_classes=len(spec.classes)
    ).to_dict()


def check_taking_part(settings: NodeSettings, spec: BenchmarkSpec) -> None:
    """Hub tasks of a benchmark run only at nodes whose data holder opted into it."""
    if not {spec.id, "*"} & set(settings.evaluation_benchmarks):
        raise EvaluationError(f"node {settings.name} does not take part in benchmark {spec.id}"
                              " (its data holder lists them in evaluation_benchmarks)")  # fmt: skip


@handler("tef.evaluate")
def evaluate_task(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """A hub task: ``{"benchmark": <spec>, "algorithm": {"sha256": <hex>, "package_zip":
    <base64 zip>}, "user": <hub user>}`` for a benchmark the node's data holder listed in
    ``evaluation_benchmarks`` (opt-in). The package is unpacked under the node home once per
    content hash and must hash to ``sha256``; the result is :func:`evaluate_at_node`'s. The
    catalog is held for the whole run."""
    spec = parse_spec(body.get("benchmark"), source="task benchmark")
    check_taking_part(ctx.service.node.settings, spec)
    algorithm = body.get("algorithm")
    if not isinstance(algorithm, dict) or not isinstance(algorithm.get("package_zip"), str):
        raise EvaluationError("the task needs algorithm.package_zip (base64) and algorithm.sha256")
    try:
        archive = base64.b64decode(algorithm["package_zip"], validate=True)
    except binascii.Error as exc:
        raise EvaluationError(f"algorithm.package_zip is not base64 ({exc})") from exc
    user = body.get("user")
    with ctx.service.catalog():
        node = ctx.service.node
        package = unpack_package(archive, node.home / PACKAGES_DIR, str(algorithm.get("sha256")))
        return evaluate_at_node(node, spec, package, actor=f"hub:{user or 'unknown'}")
