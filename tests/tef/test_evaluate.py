"""Node-side evaluation end to end: ingest, labels, ONNX in the sandbox, released result."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from tef_support import (
    FAST,
    LESION_BENCHMARK,
    lesion_onnx_package,
    python_package,
    write_lesion_cohort,
)

from oncofed.agent.handlers import HANDLERS, AgentContext
from oncofed.config import write_settings
from oncofed.ingest.slides import SlideInput
from oncofed.node import Node
from oncofed.server.service import NodeService
from oncofed.tef.algorithm import AlgorithmError, load_package, package_sha256, zip_package
from oncofed.tef.evaluate import EvaluationError, EvaluationOptions, evaluate_at_node
from oncofed.tef.spec import parse_spec
from oncofed.testing.wsi import make_slide

LABELS = [0, 1] * 12
SPEC: dict[str, Any] = {
    **LESION_BENCHMARK,
    "ci_method": "delong",
    "subgroups": ["site", "manufacturer"],
}


def exact_counts_node(home: Path, name: str) -> Path:
    """A node home that releases counts as they are (disclosure rules have their own tests)."""
    with Node.init(home, name=name) as node:
        exact = node.settings.model_copy(update={"min_count": 1, "count_rounding": 1})
        write_settings(home, exact)
    return home


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A node home with 24 labelled mammography patches (and one unlabelled)."""
    root = tmp_path_factory.mktemp("tef-node")
    rows = write_lesion_cohort(root / "dicom", [*LABELS, 1], seed=5)
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["patient_id", "kind", "value"])
        writer.writeheader()
        writer.writerows(rows[:-1])
    with Node(exact_counts_node(root / "node", "hospital-a")) as node:
        node.ingest([root / "dicom"], "breast-mg", workers=1, show_progress=False)
        assert node.import_labels(root / "labels.csv", "breast-mg").added == len(LABELS)
    return root / "node", root


@pytest.fixture
def node(cohort: tuple[Path, Path]) -> Iterator[Node]:
    with Node(cohort[0]) as opened:
        yield opened


def catalog_state(node: Node) -> dict[str, int]:
    return node.catalog.table_counts()


def test_onnx_model_is_evaluated_and_only_aggregates_leave(node: Node, onnx_package: Path) -> None:
    before = catalog_state(node)
    result = evaluate_at_node(
        node, parse_spec(SPEC), load_package(onnx_package), EvaluationOptions(limits=FAST)
    )
    assert result["status"] == "completed", result
    assert result["data"]["cases"] == len(LABELS)
    assert result["data"]["excluded"] == {"no reference label": 1}
    assert result["benchmark"]["sha256"] == parse_spec(SPEC).sha256
    assert result["algorithm"]["sha256"] == load_package(onnx_package).sha256
    assert result["isolation"]["network"] == "namespace without interfaces"
    assert set(result["subgroups"]) == {"site", "manufacturer"}
    auroc = result["metrics"]["auroc"]
    assert auroc["value"] > 0.9 and auroc["method"].startswith("delong") and len(auroc["ci"]) == 2
    text = json.dumps(result)  # JSON-safe
    stored = node.home / result["predictions"]["stored_at_node"]
    table = pq.read_table(stored).to_pylist()
    assert len(table) == len(LABELS)
    assert {row["label"] for row in table} == {"0", "1"}
    accuracy = sum((row["score"] >= 0.5) == (row["label"] == "1") for row in table) / len(table)
    assert accuracy > 0.9
    assert all(row["case_id"] not in text and row["patient"] not in text for row in table)
    assert catalog_state(node) == before
    assert node.audit.entries()[-1].action == "tef-evaluate"


def test_failing_algorithm_leaves_the_node_as_it_was(node: Node, tmp_path: Path) -> None:
    before = catalog_state(node)
    predictions = sorted((node.home / "tef").rglob("*.parquet"))
    crashing = python_package(
        tmp_path / "crash",
        "def predict(batch):\n    raise ValueError('patient FAKE-TEF-0001 looks odd')\n",
    )
    result = evaluate_at_node(
        node, parse_spec(SPEC), load_package(crashing), EvaluationOptions(limits=FAST)
    )
    assert result["status"] == "failed"
    assert result["failure"] == {"reason": "crashed", "detail": "raised an exception"}
    assert "FAKE-TEF" not in json.dumps(result)
    assert catalog_state(node) == before
    assert sorted((node.home / "tef").rglob("*.parquet")) == predictions
    assert not list((node.home / "tef" / "work").iterdir())


def test_incompatible_algorithm_is_refused_before_running(node: Node, tmp_path: Path) -> None:
    ordinal = python_package(tmp_path / "grader", "def predict(batch):\n    return batch\n",
                             meaning="ordinal_score", classes=6)  # fmt: skip
    with pytest.raises(EvaluationError, match="predicts 6 classes, the benchmark has 2"):
        evaluate_at_node(node, parse_spec(SPEC), load_package(ordinal))
    empty = parse_spec({**SPEC, "cohort": {"collection": ["nowhere"]}})
    with pytest.raises(EvaluationError, match="no labelled cases at node 'hospital-a'"):
        evaluate_at_node(node, empty, load_package(lesion_onnx_package(tmp_path / "lr")))


def test_cli_validate_and_run(cohort: tuple[Path, Path], onnx_package: Path) -> None:
    home, root = cohort
    spec_file = root / "benchmark.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    oncofed = [sys.executable, "-m", "oncofed", "tef"]
    package = os.path.relpath(onnx_package, root)  # relative paths, as people type them
    valid = subprocess.run([*oncofed, "validate", package, "--json"], cwd=root,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["dry_run_output_shape"] == [2, 2]
    node = os.path.relpath(home, root)
    done = subprocess.run([*oncofed, "run", spec_file.name, package, "-n", node], cwd=root,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "manufacturer" in done.stdout


def test_slides_are_graded_from_bags_of_tiles(tmp_path: Path) -> None:
    grades = {"FAKE-WSI-0001": "1", "FAKE-WSI-0002": "4"}
    rows = []
    with Node(exact_counts_node(tmp_path / "node", "pathology-lab")) as node:
        for seed, (patient, grade) in enumerate(grades.items(), start=1):
            slide = make_slide(tmp_path / f"{patient}.svs", "svs", seed=seed, width=512,
                               height=512)  # fmt: skip
            node.ingest_slides([SlideInput(slide.path, patient)], "prostate")
            rows.append({"patient_id": patient, "slide": slide.path.name, "kind": "isup_grade",
                         "value": grade})  # fmt: skip
        with (tmp_path / "labels.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["patient_id", "slide", "kind", "value"])
            writer.writeheader()
            writer.writerows(rows)
        assert node.import_labels(tmp_path / "labels.csv", "prostate").added == 2
        grader = python_package(
            tmp_path / "grader",
            "import numpy as np\n"
            "def predict(tiles):\n"
            "    assert tiles.shape[1:] == (3, 16, 16) and 0 <= tiles.min() <= tiles.max() <= 1\n"
            "    p = np.full((len(tiles), 6), 0.02)\n"
            "    p[:, 3] = 0.9\n"
            "    return p\n",
            meaning="class_probabilities", classes=6, kind="wsi", channels=3,
        )  # fmt: skip
        spec = parse_spec({
            "id": "prostate-isup", "version": "1", "task": "ordinal",
            "classes": [str(g) for g in range(6)],
            "input": {"modality": "SM", "kind": "wsi", "preprocessing": {"max_tiles": 4}},
            "label_kind": "isup_grade", "metrics": ["quadratic_kappa", "accuracy"],
            "primary_metric": "quadratic_kappa", "subgroups": ["site"],
        })  # fmt: skip
        result = evaluate_at_node(node, spec, load_package(grader), EvaluationOptions(limits=FAST))
        assert result["status"] == "completed", result
        empty = "<1"  # a count below the node's k (here 1) is never released as such
        assert result["data"]["per_class"] == {"0": empty, "1": 1, "2": empty, "3": empty,
                                               "4": 1, "5": empty}  # fmt: skip
        table = pq.read_table(node.home / result["predictions"]["stored_at_node"]).to_pylist()
        assert [row["predicted"] for row in table] == [3, 3]
        assert {round(row["p_3"], 6) for row in table} == {0.9}


def test_unreadable_cases_are_left_out_and_counted(
    cohort: tuple[Path, Path], onnx_package: Path, tmp_path: Path
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(cohort[0], home)
    with Node(home) as node:
        digest = node.catalog.con.execute(
            "SELECT min(i.sha256) FROM instance i JOIN series s USING (series_key)"
            " JOIN label l USING (patient_key)"
        ).fetchone()[0]
        node.store.path_for(digest).write_bytes(b"not DICOM any more")
        result = evaluate_at_node(
            node, parse_spec(SPEC), load_package(onnx_package), EvaluationOptions(limits=FAST)
        )
    assert result["status"] == "completed"
    assert result["data"]["cases"] == len(LABELS) - 1
    assert result["data"]["excluded"] == {"no reference label": 1, "pixels not decodable": 1}


def test_hub_task_ships_the_package_and_checks_its_hash(
    cohort: tuple[Path, Path], onnx_package: Path, tmp_path: Path
) -> None:
    home = tmp_path / "copy"
    shutil.copytree(cohort[0], home)
    algorithm = {"sha256": package_sha256(onnx_package),
                 "package_zip": base64.b64encode(zip_package(onnx_package)).decode()}  # fmt: skip
    task = {"benchmark": SPEC, "algorithm": algorithm, "user": "alice"}
    refused = pytest.raises(EvaluationError, match="does not take part in benchmark")
    with NodeService.open(home) as service, refused:  # no benchmark until the node opts in
        HANDLERS["tef.evaluate"](AgentContext(service, "node-1"), task)
    with Node(home) as node:
        taking_part = {"evaluation_benchmarks": [SPEC["id"]]}
        write_settings(home, node.settings.model_copy(update=taking_part))
    service = NodeService(Node(home))
    try:
        context = AgentContext(service, "node-1")
        result = HANDLERS["tef.evaluate"](context, task)
        assert result["status"] == "completed"
        assert result["algorithm"]["sha256"] == algorithm["sha256"]
        assert service.node.audit.entries()[-1].actor == "hub:alice"
        forged = {**task, "algorithm": {**algorithm, "sha256": "0" * 64}}
        with pytest.raises(AlgorithmError, match="is not the expected"):
            HANDLERS["tef.evaluate"](context, forged)
        with pytest.raises(EvaluationError, match="package_zip"):
            HANDLERS["tef.evaluate"](context, {"benchmark": SPEC})
    finally:
        service.close()
