"""The evaluation facility across real processes: a hub, three node agents, the `oncofed tef`
CLI. Benchmarks are registered by the admin only; a submitted package is checked at the hub
before any node sees it; each node evaluates in its sandbox; the hub pools what nodes released,
reports (HTML and PDF) and ranks the runs on the benchmark's leaderboard."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from federation_support import Federation, federation
from sklearn.metrics import roc_auc_score
from tef_support import (
    LESION_BENCHMARK,
    lesion_onnx_package,
    python_package,
    write_lesion_cohort,
)

from oncofed.agent.membership import join
from oncofed.config import write_settings
from oncofed.node import Node
from oncofed.tef.metrics import compare_binary

pytestmark = pytest.mark.slow
SPEC: dict[str, Any] = {
    **LESION_BENCHMARK,
    "n_bootstrap": 200,
    "subgroups": ["site"],
    "synthetic": True,
}
NODES = {"hospital-a": 5, "hospital-b": 6, "hospital-c": None}  # seed; None: no data, no opt-in
# a baseline no better than chance: the fractional digits of one noise pixel
CHANCE = "def predict(x):\n    return (x[:, 0, 0, 0] * 1000) % 1\n"


def _labelled_node(fed: Federation, name: str, seed: int | None) -> None:
    """A node releasing exact counts with a labelled MG cohort (none without a seed), joined
    and approved."""
    home = fed.root / name
    with Node.init(home, name=name) as node:
        taking_part = [SPEC["id"]] if seed is not None else []  # hospital-c: not opted in
        exact = {"min_count": 1, "count_rounding": 1, "evaluation_benchmarks": taking_part}
        write_settings(home, node.settings.model_copy(update=exact))
    if seed is not None:
        source = fed.root / f"{name}-in"
        rows = write_lesion_cohort(source / "dicom", [0, 1] * 10, seed=seed)
        with (source / "labels.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["patient_id", "kind", "value"])
            writer.writeheader()
            writer.writerows(rows)
        with Node(home) as node:
            node.ingest([source / "dicom"], "breast-mg", workers=1, show_progress=False)
            node.import_labels(source / "labels.csv", "breast-mg")
    assert join(home, fed.url, name, name=name) == "pending"
    answer = httpx.post(f"{fed.url}/hub/v1/nodes/{name}/approve", headers=fed.admin)
    assert answer.status_code == 200, answer.text


def _token(fed: Federation, user: str, role: str) -> str:
    body = {"user_id": user, "roles": [role]}
    assert httpx.post(f"{fed.url}/hub/v1/users", json=body, headers=fed.admin).status_code == 201
    answer = httpx.post(f"{fed.url}/hub/v1/users/{user}/tokens", json={}, headers=fed.admin)
    return str(answer.json()["token"])


def _cli(fed: Federation, token: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "oncofed", "tef", *args, "--hub", fed.url, "--token", token],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The hub, three joined nodes with running agents, the benchmark registered by the admin
    through the CLI."""
    for running in federation(tmp_path_factory.mktemp("facility")):
        running.start_hub()
        for name, seed in NODES.items():
            _labelled_node(running, name, seed)
            running.start_agent(name)
        running.wait_online(*NODES)
        spec_file = running.root / "benchmark.json"
        spec_file.write_text(json.dumps(SPEC))
        nodes = [arg for name in NODES for arg in ("--node", name)]
        printed = _cli(running, running.token, "register", str(spec_file), *nodes)
        assert "registered breast-mg-lesion@1.0" in printed
        yield running


def test_only_admins_register_benchmarks_for_approved_nodes(fed: Federation) -> None:
    provider = {"Authorization": f"Bearer {_token(fed, 'vendor-x', 'ai_provider')}"}
    url = f"{fed.url}/hub/v1/tef/benchmarks"
    body = {"spec": {**SPEC, "version": "2.0"}, "nodes": list(NODES)}
    assert httpx.post(url, json=body, headers=provider).status_code == 403
    unknown = httpx.post(url, json={**body, "nodes": ["nowhere"]}, headers=fed.admin)
    assert unknown.status_code == 400 and "nowhere" in unknown.json()["detail"]
    bad = httpx.post(url, json={**body, "spec": {**SPEC, "primary_metric": "kappa"}},
                     headers=fed.admin)  # fmt: skip
    assert bad.status_code == 422 and "primary_metric" in bad.json()["detail"]
    again = httpx.post(url, json={**body, "spec": SPEC}, headers=fed.admin)
    assert again.status_code == 409 and "raise the version" in again.json()["detail"]
    assert "breast-mg-lesion@1.0" in _cli(fed, fed.token, "benchmarks")


def test_broken_packages_are_refused_at_the_hub_with_the_reason(fed: Federation) -> None:
    provider = {"Authorization": f"Bearer {_token(fed, 'vendor-bad', 'ai_provider')}"}
    url = f"{fed.url}/hub/v1/tef/algorithms"
    garbage = httpx.post(url, content=b"not a zip", headers={**provider,
                         "Content-Type": "application/zip"})  # fmt: skip
    assert garbage.status_code == 422 and "not a readable zip" in garbage.json()["detail"]
    crash = python_package(fed.root / "crash", "def predict(x):\n    raise RuntimeError('boom')\n")
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in crash.iterdir():
            bundle.write(path, path.name)
    refused = httpx.post(url, content=buffer.getvalue(), timeout=120,
                         headers={**provider, "Content-Type": "application/zip"})  # fmt: skip
    assert refused.status_code == 422 and "boom" in refused.json()["detail"], refused.text
    assert httpx.get(url, headers=provider).json() == []  # nothing was kept


def _predictions(fed: Federation, run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    tables = [pq.read_table(fed.root / node["node"] / node["predictions"]["stored_at_node"])
              for node in run["nodes"]]  # fmt: skip
    target = np.concatenate([t.column("target").to_numpy() for t in tables])
    score = np.concatenate([t.column("score").to_numpy() for t in tables])
    return target, score


def test_a_run_is_evaluated_at_every_node_pooled_reported_and_ranked(fed: Federation) -> None:
    token = _token(fed, "vendor-y", "ai_provider")
    model = lesion_onnx_package(fed.root / "lesion-lr")
    baseline = python_package(fed.root / "chance", CHANCE)
    out = _cli(fed, token, "submit", str(model), "--benchmark", "breast-mg-lesion@1.0",
               "--wait", "240")  # fmt: skip
    run_id = re.search(r"run ([0-9a-f]{32}) started", out)[1]  # type: ignore[index]
    run = httpx.get(f"{fed.url}/hub/v1/tef/runs/{run_id}",
                    headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    assert run["state"] == "completed", run
    assert [n["node"] for n in run["nodes"]] == ["hospital-a", "hospital-b"]
    assert "does not take part in benchmark" in run["failures"]["hospital-c"]
    assert "hospital-a: 20 cases, auroc" in out and "pooled over 2 nodes" in out
    target, score = _predictions(fed, run)  # read at the nodes: the test can, the hub cannot
    pooled = run["pooled"]
    exact = roc_auc_score(target, score)
    assert pooled["cases"] == 40 and abs(pooled["auroc"]["value"] - exact) <= pooled["bound"]
    report = fed.root / "report.html"
    pdf = fed.root / "report.pdf"
    _cli(fed, token, "report", run_id, "--out", str(report), "--pdf", str(pdf))
    html = report.read_text()
    assert "hospital-a" in html and "hospital-b" in html and run["algorithm"] in html
    assert "synthetic" in html.lower()
    assert pdf.read_bytes().startswith(b"%PDF")
    other = {"Authorization": f"Bearer {_token(fed, 'vendor-z', 'ai_provider')}"}
    assert httpx.get(f"{fed.url}/hub/v1/tef/runs/{run_id}", headers=other).status_code == 404
    second = _cli(fed, token, "submit", str(baseline), "--benchmark", "breast-mg-lesion@1.0",
                  "--wait", "240")  # fmt: skip
    _compare(fed, token, run, re.search(r"run ([0-9a-f]{32}) started", second)[1])  # type: ignore[index]
    reader = {"Authorization": f"Bearer {_token(fed, 'reader', 'researcher')}"}
    board = httpx.get(f"{fed.url}/hub/v1/tef/benchmarks/breast-mg-lesion/1.0/leaderboard",
                      headers=reader).json()  # fmt: skip
    assert [row["algorithm"] for row in board] == ["lesion-lr", "chance"]
    assert board[0]["value"] > 0.9 > board[1]["value"]
    printed = _cli(fed, token, "leaderboard", "breast-mg-lesion@1.0")
    assert printed.index("lesion-lr") < printed.index("chance")


def _compare(fed: Federation, token: str, run: dict[str, Any], other_id: str) -> None:
    """The paired DeLong test per node equals one computed on the node's stored predictions;
    the combination says the model beats the baseline."""
    result = json.loads(_cli(fed, token, "compare", run["run_id"], other_id, "--json"))
    assert result["state"] == "completed" and result["failures"] == {}, result
    other = httpx.get(f"{fed.url}/hub/v1/tef/runs/{other_id}",
                      headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    for node in result["nodes"]:
        paths = [fed.root / node["node"] / n["predictions"]["stored_at_node"]
                 for outcome in (run, other) for n in outcome["nodes"]
                 if n["node"] == node["node"]]  # fmt: skip
        first, second = (pq.read_table(p).to_pandas().set_index("case_id") for p in paths)
        second = second.loc[first.index]
        expected = compare_binary(first["target"], first["score"], second["score"])
        assert node["difference"] == pytest.approx(expected.difference, abs=1e-12)
        assert node["p_value"] == pytest.approx(expected.p_value, rel=1e-9)
    combined = result["combined"]
    assert combined["nodes"] == 2 and combined["difference"] > 0.3 and combined["p_value"] < 1e-3
