"""`oncofed models`: train from a node's cohort and refuse to mix runs as a real process; export
to a TEF package and draw a saliency map through the same typer app in this process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from oncofed.cli.app import app
from oncofed.errors import OncofedError
from oncofed.models.breast_us.data import files_from_node
from oncofed.node import Node
from oncofed.tef.algorithm import load_package
from oncofed.testing.breast_us import BreastUSManifest, generate_breast_us

COHORT = '{"collection": ["breast-us"]}'


def oncofed(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oncofed", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def in_process(*args: str | Path) -> Result:
    """The same command in this process (torch is loaded once for the whole module)."""
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BreastUSManifest]:
    """A node holding 40 de-identified, labelled ultrasound images from two sites."""
    root = tmp_path_factory.mktemp("us-cli")
    manifest = generate_breast_us(root / "us", cases=20, seed=5, sites=("SITE-A", "SITE-B"))
    with Node.init(root / "node", name="hospital-a") as opened:
        report = opened.ingest([manifest.dicom_dir], "breast-us", workers=1, show_progress=False)
        assert report.added == 40
        opened.import_labels(manifest.labels_csv, "breast-us", strict=True)
    return root / "node", manifest


def test_train_from_a_node_then_export_package_and_saliency(
    node: tuple[Path, BreastUSManifest], tmp_path: Path
) -> None:
    home, manifest = node
    out = tmp_path / "run"
    train = [
        "models", "train", "breast-us", "--node", home, "--cohort", COHORT, "--out", out,
        "--epochs", "2", "--size", "32", "--threads", "1",
    ]  # fmt: skip
    done = oncofed(*train, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["cases"] == {"train": 32, "validation": 8}
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert json.loads((out / "history.json").read_text()) == summary
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0001.pt",
        "epoch-0002.pt",
    ]

    kept = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = oncofed(*train)
    assert again.returncode == 2 and "--resume" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept

    exported = in_process("models", "export", out, "--package", tmp_path / "pkg", "--json")
    assert exported.exit_code == 0, exported.output
    result = json.loads(exported.stdout)
    assert result["max_abs_difference"] <= 1e-4
    package = load_package(result["package"])
    assert package.manifest.input.shape == (-1, 1, 64, 64)  # whole frames, cropped inside
    assert package.manifest.output.meaning == "probability"

    png = tmp_path / "saliency.png"
    drawn = in_process("models", "saliency", out, manifest.images[0].path, "--out", png)
    assert drawn.exit_code == 0, drawn.output
    assert "P(malignant)" in drawn.stdout
    x0, y0, x1, y1 = manifest.images[0].region
    assert Image.open(png).size == (x1 - x0 + 1, y1 - y0 + 1)


def test_bad_arguments_are_explained(node: tuple[Path, BreastUSManifest], tmp_path: Path) -> None:
    home, manifest = node
    both = oncofed(
        "models", "train", "breast-us", "--node", home, "--cohort", COHORT,
        "--images", tmp_path, "--labels", manifest.labels_csv, "--out", tmp_path / "o",
    )  # fmt: skip
    assert both.returncode == 2 and "either --node and --cohort" in both.stderr
    assert not (tmp_path / "o").exists()


def test_a_cohort_without_labelled_images_is_refused(node: tuple[Path, BreastUSManifest]) -> None:
    with Node(node[0], read_only=True) as opened, pytest.raises(OncofedError) as caught:
        files_from_node(opened, {"collection": ["nothing-here"]})
    assert "no labelled US cases" in caught.value.message
    with Node(node[0], read_only=True) as opened, pytest.raises(OncofedError) as caught:
        files_from_node(opened, {"no_such_field": ["x"]})
    assert "no_such_field" in caught.value.message


def test_export_refuses_a_file_that_is_not_a_saved_model(tmp_path: Path) -> None:
    for name, content in (("garbage.pt", b"garbage"), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        done = in_process("models", "export", tmp_path / name, "--onnx", tmp_path / "m.onnx")
        assert isinstance(done.exception, OncofedError)
        assert f"{name}: not a saved oncofed model" in done.exception.message
    assert not (tmp_path / "m.onnx").exists()
