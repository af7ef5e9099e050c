"""Breast ultrasound pipeline on generated images: learning, saliency, export, crop, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from skimage.transform import resize
from sklearn.metrics import roc_auc_score

from oncofed.catalog.labels import LabelError
from oncofed.config import write_settings
from oncofed.errors import OncofedError
from oncofed.models.breast_us import pipeline
from oncofed.models.breast_us.data import files_from_folder
from oncofed.models.breast_us.gradcam import grad_cam
from oncofed.models.breast_us.model import ContentCrop, Probability, UltrasoundNet
from oncofed.models.breast_us.preprocess import (
    UltrasoundImageError,
    load_input,
    prepare,
    read_grey,
    region_by_heuristic,
    region_from_sequence,
)
from oncofed.models.cli_support import LabelledFile, split_by_patient
from oncofed.models.training import TrainConfig
from oncofed.node import Node
from oncofed.tef.algorithm import load_package, run_algorithm, validate_package
from oncofed.tef.evaluate import EvaluationOptions, evaluate_at_node
from oncofed.tef.sandbox import Limits
from oncofed.tef.spec import parse_spec
from oncofed.testing.breast_us import BreastUSManifest, generate_breast_us

torch.set_num_threads(1)
SIZE = 64
SETTINGS = pipeline.BreastUSSettings(size=SIZE)
SANDBOX = Limits(memory_mb=1024, cpu_seconds=30, wall_seconds=60, log_bytes=64 * 1024)
BENCHMARK = {
    "id": "breast-us-malignancy",
    "version": "1",
    "task": "binary",
    "classes": ["0", "1"],
    "input": {"modality": "US", "kind": "dicom-image"},
    "cohort": {"collection": ["breast-us"]},
    "label_kind": "malignant",
    "metrics": ["auroc"],
    "primary_metric": "auroc",
    "subgroups": ["manufacturer"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[BreastUSManifest, BreastUSManifest]:
    """240 training images from site A; 40 held-out images from each of sites A, B and C."""
    root = tmp_path_factory.mktemp("breast-us")
    train = generate_breast_us(root / "train", cases=240, seed=0, sites=("SITE-A",))
    held_out = generate_breast_us(
        root / "held-out", cases=40, seed=2, sites=("SITE-A", "SITE-B", "SITE-C")
    )
    return train, held_out


def folder_files(manifest: BreastUSManifest) -> list[LabelledFile]:
    return files_from_folder(manifest.dicom_dir, manifest.labels_csv)


@pytest.fixture(scope="module")
def trained(data: tuple[BreastUSManifest, BreastUSManifest]) -> UltrasoundNet:
    train_files, validation_files = split_by_patient(folder_files(data[0]), 0.2, seed=0)
    config = TrainConfig(epochs=8, batch_size=16, learning_rate=3e-3, threads=1)
    model, history = pipeline.train(train_files, validation_files, config, SETTINGS)
    assert history.final.epoch == 8
    return model


def test_trains_to_clearly_better_than_chance_on_held_out_images(
    data: tuple[BreastUSManifest, BreastUSManifest], trained: UltrasoundNet
) -> None:
    held_out = folder_files(data[1])
    by_site = {}
    for site in ("SYNTH SITE A", "SYNTH SITE B", "SYNTH SITE C"):
        files = [f for f in held_out if f.site == site]
        targets, scores = pipeline.probabilities(trained, files, SETTINGS)
        assert sorted(set(targets.tolist())) == [0.0, 1.0]
        by_site[site] = roc_auc_score(targets, scores)
    assert min(by_site.values()) > 0.8, by_site
    assert np.mean(list(by_site.values())) > 0.85, by_site


def test_grad_cam_highlights_the_lesion_more_than_the_background(
    data: tuple[BreastUSManifest, BreastUSManifest], trained: UltrasoundNet
) -> None:
    ratios = []
    for image in data[1].images:
        heatmap, probability = grad_cam(trained, load_input(image.path, size=SIZE))
        assert heatmap.shape == (SIZE, SIZE) and 0 <= heatmap.min() <= heatmap.max() <= 1
        assert 0 <= probability <= 1
        x0, y0, x1, y1 = image.region
        lesion = resize(image.lesion[y0 : y1 + 1, x0 : x1 + 1].astype(float), heatmap.shape) > 0.5
        ratios.append(heatmap[lesion].mean() / max(heatmap[~lesion].mean(), 1e-9))
    assert np.median(ratios) > 1.3
    assert np.mean(np.array(ratios) > 1) > 0.75


@pytest.fixture(scope="module")
def package(trained: UltrasoundNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("breast-us-package")
    onnx_path = folder / "breast-us.onnx"
    assert pipeline.export(trained, SETTINGS, onnx_path) <= 1e-4
    return pipeline.package(onnx_path, SETTINGS, folder / "pkg", name="breast-us-ref", version="1")


def whole_frame(path: Path, side: int) -> np.ndarray:
    """What the facility feeds the package: the whole frame, /255, resized (no crop)."""
    grey = read_grey(pydicom.dcmread(path), str(path)) / 255
    return resize(grey, (side, side), order=1, anti_aliasing=True, preserve_range=True)[None]


def test_onnx_export_matches_pytorch_and_runs_in_the_sandbox(
    data: tuple[BreastUSManifest, BreastUSManifest], trained: UltrasoundNet, package: Path
) -> None:
    report = validate_package(package, limits=SANDBOX)
    assert report.dry_run_shape == (2,)
    frames = np.stack([whole_frame(i.path, SETTINGS.frame) for i in data[1].images[::10]])
    run = run_algorithm(load_package(package), [frames.astype(np.float32)], limits=SANDBOX)
    with torch.no_grad():
        expected = Probability(trained, SIZE).eval()(torch.from_numpy(frames).float()).numpy()
    assert np.abs(run.outputs[0].reshape(-1) - expected).max() <= 1e-4


def test_evaluated_through_the_facility_at_a_node(
    data: tuple[BreastUSManifest, BreastUSManifest], package: Path, tmp_path: Path
) -> None:
    held_out = data[1]
    with Node.init(tmp_path / "node", name="hospital-b") as node:
        write_settings(node.home, node.settings.model_copy(update={"min_count": 1}))
    with Node(tmp_path / "node") as node:
        node.ingest([held_out.dicom_dir], "breast-us", workers=1, show_progress=False)
        node.import_labels(held_out.labels_csv, "breast-us", strict=True)
        result = evaluate_at_node(node, parse_spec(BENCHMARK), load_package(package),
                                  EvaluationOptions(limits=SANDBOX))  # fmt: skip
    assert result["status"] == "completed", result
    assert result["data"]["cases"] == len(held_out.images)
    assert result["metrics"]["auroc"]["value"] > 0.8
    by_scanner = result["subgroups"]["manufacturer"]
    assert len(by_scanner) == 3
    assert all(group["auroc"]["value"] > 0.75 for group in by_scanner.values()), by_scanner


def test_content_crop_finds_the_lit_region() -> None:
    frames = torch.zeros(2, 1, 96, 128)
    ramp = torch.linspace(0.2, 0.9, 80)
    frames[0, 0, 20:80, 30:110] = ramp  # rows 20-79, columns 30-109, brighter to the right
    frames[0, 0, 2:6, 0:128:3] = 1.0  # sparse header text is not part of the region
    crops = ContentCrop(16)(frames)
    assert crops.shape == (2, 1, 16, 16)
    assert float(crops[0].min()) >= 0.2 - 1e-6  # nothing of the black border
    assert float(crops[0, 0, :, 0].mean()) < 0.3 and float(crops[0, 0, :, -1].mean()) > 0.8
    assert torch.equal(crops[1], torch.zeros(1, 16, 16))  # a black frame is used whole


def test_resumed_training_ends_with_the_uninterrupted_weights(
    data: tuple[BreastUSManifest, BreastUSManifest], tmp_path: Path
) -> None:
    files = folder_files(data[0])[:32]
    train_files, validation_files = files[:24], files[24:]
    settings = pipeline.BreastUSSettings(size=24, width=4)

    def run(epochs: int, folder: Path) -> UltrasoundNet:
        config = TrainConfig(epochs=epochs, batch_size=8, learning_rate=3e-3, threads=1,
                             checkpoint_dir=folder)  # fmt: skip
        return pipeline.train(train_files, validation_files, config, settings)[0]

    straight = run(3, tmp_path)
    for later in ("epoch-0002.pt", "epoch-0003.pt"):  # as if stopped after the first epoch
        (tmp_path / later).unlink()
    resumed = run(3, tmp_path)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_crop_follows_the_region_sequence_else_finds_the_image(
    data: tuple[BreastUSManifest, BreastUSManifest],
) -> None:
    for image in data[1].images[::20]:  # one per site
        ds = pydicom.dcmread(image.path)
        assert region_from_sequence(ds) == image.region
        assert region_by_heuristic(read_grey(ds, "test")) == image.region
        x0, y0, x1, y1 = image.region
        item = ds.SequenceOfUltrasoundRegions[0]
        item.RegionLocationMinX0, item.RegionLocationMaxX1 = x0 + 10, x1 - 10
        narrowed = prepare(ds, size=SIZE)
        grey = read_grey(ds, "test")
        expected = resize(grey[y0 : y1 + 1, x0 + 10 : x1 - 9], (SIZE, SIZE), order=1,
                          anti_aliasing=True, preserve_range=True) / 255  # fmt: skip
        assert np.abs(narrowed[0] - expected).max() < 1e-5
        del ds.SequenceOfUltrasoundRegions
        assert np.abs(prepare(ds, size=SIZE) - load_input(image.path, size=SIZE)).max() < 1e-6


def test_unusable_files_are_named_in_the_error(
    data: tuple[BreastUSManifest, BreastUSManifest], tmp_path: Path
) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("not an image")
    with pytest.raises(UltrasoundImageError, match=r"notes\.dcm"):
        load_input(text)
    ds = pydicom.dcmread(data[1].images[0].path)
    ds.BitsStored = 12
    with pytest.raises(UltrasoundImageError, match="8-bit"):
        prepare(ds, source="deep.dcm")


def test_label_files_without_usable_rows_are_refused(
    data: tuple[BreastUSManifest, BreastUSManifest], tmp_path: Path
) -> None:
    only_birads = tmp_path / "birads.csv"
    only_birads.write_text("patient_id,kind,value\nFAKE-USA-0001,birads,4\n")
    with pytest.raises(OncofedError, match="no rows of kind 'malignant'"):
        files_from_folder(data[0].dicom_dir, only_birads)
    bad_value = tmp_path / "bad.csv"
    bad_value.write_text("patient_id,kind,value\nFAKE-USA-0001,malignant,maybe\n")
    with pytest.raises(LabelError, match="line 2"):
        files_from_folder(data[0].dicom_dir, bad_value)
    strangers = tmp_path / "strangers.csv"
    strangers.write_text("patient_id,kind,value\nSOMEONE-ELSE,malignant,1\n")
    with pytest.raises(OncofedError, match="no US DICOM files"):
        files_from_folder(data[0].dicom_dir, strangers)
