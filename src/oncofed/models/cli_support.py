"""What the ``oncofed models`` commands share: a node cohort as labelled files, a seeded split
by patient, the output folder layout and the saved-model file."""

from __future__ import annotations

import importlib
import io
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oncofed.errors import OncofedError
from oncofed.models.training import TrainingError, checkpoints, load_failure
from oncofed.node import Node
from oncofed.storage.atomic import write_atomic
from oncofed.tef.cases import resolve_cases
from oncofed.tef.spec import BenchmarkSpec, parse_spec

EXPORTERS = {
    "breast-us": "oncofed.models.breast_us.pipeline",
    "prostate-isup": "oncofed.models.prostate.pipeline",
}
"""Pipeline name -> module with ``exportable(settings, state) -> Exportable`` (what ``oncofed
models export`` calls for a saved model of that pipeline)."""
MODEL_FILE = "model.pt"
ONNX_FILE = "model.onnx"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class Exportable:
    """A restored model's exporters: ``export(onnx_path)`` writes the ONNX file and returns its
    largest difference from PyTorch; ``package(onnx_path, out_dir, name, version)`` writes the
    TEF algorithm package and returns its folder."""

    export: Callable[[Path], float]
    package: Callable[[Path, Path, str, str], Path]


@dataclass(frozen=True)
class LabelledFile:
    """One case's file (a DICOM instance or a slide) with its class index and subgroups."""

    path: Path
    target: int
    patient: str
    site: str


def parse_cohort(text: str) -> dict[str, Any]:
    """A cohort filter given as JSON text on the command line."""
    try:
        cohort = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OncofedError(f"--cohort {text!r} is not JSON ({exc.msg})") from exc
    if not isinstance(cohort, dict):
        raise OncofedError(f"--cohort {text!r} must be a JSON object of field -> values")
    return cohort


def node_cases(
    node: Node,
    cohort: dict[str, Any],
    *,
    modality: str,
    input_kind: str,
    label_kind: str,
    classes: Sequence[str],
) -> list[LabelledFile]:
    """The cohort's labelled series at ``node`` (resolved as the evaluation facility resolves a
    benchmark's cases) with the file to read: a slide, or the series' middle instance."""
    spec = _spec(cohort, modality, input_kind, label_kind, classes)
    found = resolve_cases(node, spec)
    if not found.cases:
        reasons = ", ".join(f"{n} {why}" for why, n in found.excluded.items()) or "no series"
        raise OncofedError(
            f"cohort {json.dumps(cohort)} at {node.home} has no labelled {modality} cases "
            f"with label kind {label_kind!r} ({reasons})"
        )
    files = []
    for case in found.cases:
        if case.slide_sha256 is not None:
            digest = case.slide_sha256
        else:
            rows = node.catalog.con.execute(
                "SELECT sha256 FROM instance WHERE series_key = ? ORDER BY sop_uid",
                [case.series_key],
            ).fetchall()
            digest = str(rows[len(rows) // 2][0])
        files.append(
            LabelledFile(
                node.store.path_for(digest), case.target, case.patient, case.subgroups["site"]
            )
        )
    return files


def _spec(
    cohort: dict[str, Any], modality: str, input_kind: str, label_kind: str, classes: Sequence[str]
) -> BenchmarkSpec:
    task = "binary" if len(classes) == 2 else "ordinal"
    metric = "auroc" if task == "binary" else "quadratic_kappa"
    return parse_spec(
        {
            "id": "training-cohort",
            "version": "1",
            "task": task,
            "classes": list(classes),
            "input": {"modality": modality, "kind": input_kind},
            "cohort": cohort,
            "label_kind": label_kind,
            "metrics": [metric],
            "primary_metric": metric,
        },
        source="--cohort",
    )


def split_by_patient(
    files: Sequence[LabelledFile], validation_fraction: float, seed: int
) -> tuple[list[LabelledFile], list[LabelledFile]]:
    """Seeded split keeping each patient's files on one side; both sides get a patient."""
    patients = sorted({f.patient for f in files})
    if len(patients) < 2:
        raise TrainingError(f"{len(patients)} patient(s): training needs at least 2")
    if not 0 < validation_fraction < 1:
        raise TrainingError(f"validation fraction {validation_fraction} is not in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(patients))
    held = max(1, min(len(patients) - 1, round(len(patients) * validation_fraction)))
    validation = {patients[i] for i in order[:held]}
    return (
        [f for f in files if f.patient not in validation],
        [f for f in files if f.patient in validation],
    )


def check_output_dir(out: Path, *, resume: bool) -> Path:
    """The checkpoint folder under ``out``; refuses to mix a new run into an old one."""
    folder = out / CHECKPOINT_DIR
    if checkpoints(folder) and not resume:
        raise TrainingError(
            f"{out} already holds checkpoints; pass --resume to continue that run "
            "or choose another --out"
        )
    return folder


def save_model(path: Path, pipeline: str, settings: dict[str, Any], model: torch.nn.Module) -> Path:
    """Write the trained weights with the pipeline name and settings that rebuild the model."""
    buffer = io.BytesIO()
    torch.save({"pipeline": pipeline, "settings": settings, "state": model.state_dict()}, buffer)
    return write_atomic(path, buffer.getvalue())


def load_model_file(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(pipeline, settings, state dict)`` of a file written by :func:`save_model`."""
    try:
        saved = torch.load(path, weights_only=True)
        return str(saved["pipeline"]), dict(saved["settings"]), dict(saved["state"])
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, KeyError, TypeError,
            ValueError) as exc:  # fmt: skip
        raise OncofedError(f"{path}: not a saved oncofed model ({load_failure(exc)})") from exc


def write_json(path: Path, data: Any) -> Path:
    """Pretty JSON, written atomically."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def export_saved_model(
    path: Path, onnx_path: Path, package_dir: Path | None, *, name: str, version: str
) -> dict[str, Any]:
    """Export the model saved at ``path`` through its pipeline's exporter."""
    pipeline, settings, state = load_model_file(path)
    module = EXPORTERS.get(pipeline)
    if module is None:
        raise OncofedError(
            f"{path}: no exporter for pipeline {pipeline!r} (known: {', '.join(EXPORTERS)})"
        )
    exportable: Exportable = importlib.import_module(module).exportable(settings, state)
    result: dict[str, Any] = {
        "onnx": str(onnx_path),
        "max_abs_difference": exportable.export(onnx_path),
    }
    if package_dir is not None:
        written = exportable.package(
            onnx_path, package_dir, name or f"{pipeline}-reference", version
        )
        result["package"] = str(written)
    return result
