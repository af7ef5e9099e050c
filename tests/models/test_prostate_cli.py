"""`oncofed models` for prostate slides: train from a node's cohort, export and package, grade a
slide at the node and see its attention heatmap over the slide in the node server's viewer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner, Result

from oncofed.access.store import IdentityStore
from oncofed.cli.app import app
from oncofed.ingest.slides import read_sample_sheet
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService
from oncofed.tef.algorithm import load_package
from oncofed.testing.prostate import ProstateCohort, generate_prostate

COHORT = '{"collection": ["prostate"]}'
FAST = ("--epochs", "2", "--max-tiles", "8", "--threads", "1")


def in_process(*args: str | Path) -> Result:
    """The command in this process (torch is loaded once for the module)."""
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ProstateCohort]:
    """A node holding 8 de-identified, labelled biopsy slides."""
    root = tmp_path_factory.mktemp("prostate-cli")
    cohort = generate_prostate(root / "slides", slides_per_site=8, seed=4)
    with Node.init(root / "node", name="hospital-a") as opened:
        report = opened.ingest_slides(read_sample_sheet(cohort.sample_sheet), "prostate")
        assert report.added == 8
        rows = 3 * 8 - sum(s.gleason is None for s in cohort.slides)  # benign: no Gleason row
        assert opened.import_labels(cohort.labels_csv, "prostate", strict=True).added == rows
    return root / "node", cohort


def test_train_export_grade_and_view_the_heatmap(
    node: tuple[Path, ProstateCohort], tmp_path: Path
) -> None:
    home, _ = node
    run = tmp_path / "run"
    trained = in_process("models", "train", "prostate-isup", "--node", home, "--cohort", COHORT,
                         "--out", run, *FAST, "--json")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.output)
    assert (
        summary["pipeline"] == "prostate-isup" and "synthetic" in summary["synthetic_data_warning"]
    )
    assert summary["cases"] == {"train": 6, "validation": 2}
    assert list(summary["validation_by_site"]) == ["hospital-a"]
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert (run / "model.pt").is_file() and len(list((run / "checkpoints").iterdir())) == 2

    exported = in_process("models", "export", run, "--package", tmp_path / "pkg", "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["max_abs_difference"] <= 1e-4
    manifest = load_package(tmp_path / "pkg").manifest
    assert manifest.input.kind == "wsi" and manifest.preprocessing.mpp == 1.0

    with Node(home, read_only=True) as opened:
        slide_id = str(opened.catalog.con.execute("SELECT min(slide_id) FROM slide").fetchone()[0])
    graded = in_process("models", "grade", run, slide_id, "--node", home, "--json")
    assert graded.exit_code == 0, graded.output
    result = json.loads(graded.output)
    assert 0 <= result["isup_grade_group"] <= 5 and result["tiles"] > 8
    assert Path(result["heatmap"]) == home / "heatmaps" / slide_id / "attention.parquet"

    with Node(home) as opened:
        admin = IdentityStore(opened.catalog.con)
        admin.add_user("viewer", ["admin"])
        admin.grant("viewer", "prostate", 3, "admin")
        token = admin.issue_token("viewer").token
    service = NodeService.open(home)
    try:
        client = TestClient(create_app(service), headers={"Authorization": f"Bearer {token}"})
        assert client.get(f"/wsi/{slide_id}/heatmaps").json() == ["attention"]
        png = client.get(f"/wsi/{slide_id}/heatmaps/attention.png", params={"size": 512})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        overlay = Image.open(io.BytesIO(png.content))
        assert overlay.mode == "RGBA" and overlay.size == (512, 256)  # the slide is 2048 x 1024
        alpha = overlay.getchannel("A")
        assert alpha.getextrema() == (0, 170)  # tissue tiles drawn, glass left transparent
        page = client.get(f"/wsi/{slide_id}/viewer").text
        assert 'id="heatmap-attention">' in page and '"heatmaps/"' in page  # off at first
        shown = client.get(f"/wsi/{slide_id}/viewer", params={"heatmap": "attention"}).text
        assert 'id="heatmap-attention" checked>' in shown
        assert client.get(f"/wsi/{slide_id}/heatmaps/missing.png").status_code == 404
        assert client.get(f"/wsi/{slide_id}/heatmaps/..%2Fx.png").status_code in (400, 404)
        assert client.get("/wsi/no-such-slide/heatmaps").status_code == 404
    finally:
        service.close()


def test_sample_sheet_training_with_stain_normalisation(
    node: tuple[Path, ProstateCohort], tmp_path: Path
) -> None:
    _, cohort = node
    run = tmp_path / "run"
    trained = in_process("models", "train", "prostate-isup", "--slides", cohort.sample_sheet,
                         "--labels", cohort.labels_csv, "--stain", "macenko", "--out", run,
                         "--epochs", "1", "--max-tiles", "8", "--threads", "1")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "trained prostate-isup on 6 slides, validated on 2" in trained.output
    before = (run / "model.pt").read_bytes()
    again = in_process("models", "train", "prostate-isup", "--slides", cohort.sample_sheet,
                       "--labels", cohort.labels_csv, "--out", run, "--epochs", "1")  # fmt: skip
    assert again.exit_code != 0 and "pass --resume" in str(again.exception)
    assert (run / "model.pt").read_bytes() == before  # the earlier run is untouched


def test_bad_arguments_are_one_line_errors_from_a_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oncofed", "models", "train", "prostate-isup", "--out",
         str(tmp_path / "run"), "--slides", "sheet.csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "give either --node and --cohort, or --slides and --labels" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
    stain = in_process("models", "train", "prostate-isup", "--out", tmp_path / "r", "--slides",
                       "s.csv", "--labels", "l.csv", "--stain", "reinhard")  # fmt: skip
    assert stain.exit_code != 0 and "--stain 'reinhard'" in str(stain.exception)
