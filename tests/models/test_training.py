"""Shared model infrastructure: seeded resumable training, ONNX export checks, TEF packaging."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from oncofed.models.export import ExportError, check_onnx_matches, export_onnx
from oncofed.models.package import PackageError, package_for_tef
from oncofed.models.training import (
    TrainConfig,
    TrainingError,
    checkpoints,
    fit,
    seed_everything,
)
from oncofed.tef.algorithm import load_package

torch.set_num_threads(1)


class NoisyFlip(Dataset[tuple[Tensor, Tensor]]):
    """Random flips and noise from torch's global generator, as training augmentation does."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.inputs[index]
        if bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return image + 0.05 * torch.randn(image.shape), self.targets[index]


def bright_centre_data(count: int, seed: int) -> tuple[Tensor, Tensor]:
    """8x8 noise images; label 1 has a brighter centre."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, 8, 8, generator=generator)
    labels = (torch.arange(count) % 2).float()
    images[labels == 1, :, 2:6, 2:6] += 0.6
    return images, labels


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 1),
        nn.Flatten(0),
    )


def auroc(targets: NDArray[np.float32], outputs: NDArray[np.float32]) -> float:
    return float(roc_auc_score(targets, outputs))


TRAIN = NoisyFlip(*bright_centre_data(48, seed=1))
VALIDATION = TensorDataset(*bright_centre_data(24, seed=2))


def train(epochs: int, checkpoint_dir: Path | None, *, loss: nn.Module | None = None) -> nn.Module:
    seed_everything(3)
    model = small_net()
    fit(
        model,
        TRAIN,
        VALIDATION,
        config=TrainConfig(
            epochs=epochs,
            batch_size=8,
            learning_rate=0.01,
            seed=7,
            threads=1,
            checkpoint_dir=checkpoint_dir,
        ),
        loss=loss or nn.BCEWithLogitsLoss(),
        metric=auroc,
        metric_name="auroc",
    )
    return model


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


class FailingLoss(nn.Module):
    """BCE that raises (like a killed run) on its ``fail_at``-th call."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return nn.functional.binary_cross_entropy_with_logits(output, target)


def test_fit_learns_and_records_each_epoch(tmp_path: Path) -> None:
    seed_everything(3)
    model = small_net()
    history = fit(
        model, TRAIN, VALIDATION,
        config=TrainConfig(epochs=6, batch_size=8, learning_rate=0.01, seed=7, threads=1,
                           checkpoint_dir=tmp_path),
        loss=nn.BCEWithLogitsLoss(), metric=auroc, metric_name="auroc",
    )  # fmt: skip
    assert [e.epoch for e in history.epochs] == [1, 2, 3, 4, 5, 6]
    assert history.final.metric > 0.9
    assert history.final.train_loss < history.epochs[0].train_loss
    assert [p.name for p in checkpoints(tmp_path)] == [f"epoch-{n:04d}.pt" for n in range(1, 7)]
    assert not list(tmp_path.glob("*.part"))


def test_same_seed_gives_the_same_weights() -> None:
    assert same_weights(train(3, None), train(3, None))


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    uninterrupted = train(4, tmp_path / "straight")
    loss_calls_per_epoch = 48 // 8 + 24 // 8  # training and validation batches
    with pytest.raises(KeyboardInterrupt):  # killed during epoch 3
        train(4, tmp_path / "killed", loss=FailingLoss(2 * loss_calls_per_epoch + 3))
    assert len(checkpoints(tmp_path / "killed")) == 2
    resumed = train(4, tmp_path / "killed")
    assert same_weights(uninterrupted, resumed)


def test_resume_refuses_other_settings_and_damaged_checkpoints(tmp_path: Path) -> None:
    train(2, tmp_path)
    seed_everything(3)
    other = TrainConfig(epochs=3, batch_size=4, learning_rate=0.01, seed=7, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="batch_size"):
        fit(small_net(), TRAIN, VALIDATION, config=other, loss=nn.BCEWithLogitsLoss(),
            metric=auroc, metric_name="auroc")  # fmt: skip
    newest = checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(TrainingError, match=r"epoch-0002\.pt"):
        train(3, tmp_path)
    assert checkpoints(tmp_path)[0].stat().st_size > 1000  # older checkpoint untouched


@pytest.mark.parametrize(
    ("change", "message"),
    [({"epochs": 0}, "epochs"), ({"learning_rate": -1.0}, "learning_rate"),
     ({"weight_decay": -0.1}, "weight_decay")],
)  # fmt: skip
def test_bad_settings_are_refused(change: dict[str, float], message: str) -> None:
    settings = {"epochs": 1, "batch_size": 4, "learning_rate": 0.01, **change}
    with pytest.raises(TrainingError, match=message):
        fit(small_net(), TRAIN, VALIDATION, config=TrainConfig(**settings),  # type: ignore[arg-type]
            loss=nn.BCEWithLogitsLoss(), metric=auroc, metric_name="auroc")  # fmt: skip


def test_onnx_export_matches_pytorch_for_any_batch(tmp_path: Path) -> None:
    model = train(2, None).eval()
    path = export_onnx(
        model, torch.rand(2, 1, 8, 8), tmp_path / "m.onnx",
        input_names=["image"], output_names=["logit"], dynamic_axes={"image": {0: "batch"}},
    )  # fmt: skip
    for batch in (1, 7):
        assert check_onnx_matches(model, path, torch.rand(batch, 1, 8, 8)) <= 1e-4
    with torch.no_grad():
        model[-2].bias += 0.01  # type: ignore[index,operator]
    with pytest.raises(ExportError, match="differ"):
        check_onnx_matches(model, path, torch.rand(3, 1, 8, 8))


def test_export_refuses_mismatched_names(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="input names"):
        export_onnx(small_net(), torch.rand(2, 1, 8, 8), tmp_path / "m.onnx",
                    input_names=["a", "b"], output_names=["y"], dynamic_axes={})  # fmt: skip
    assert not (tmp_path / "m.onnx").exists()


MANIFEST = {
    "algorithm": {"name": "tiny", "version": "1"},
    "input": {"kind": "dicom-image", "name": "image", "shape": [-1, 1, 8, 8]},
    "preprocessing": {"normalise": "unit"},
    "output": {"name": "p", "meaning": "probability", "classes": 2},
}


def test_package_is_a_loadable_tef_algorithm(tmp_path: Path) -> None:
    model = nn.Sequential(small_net(), nn.Sigmoid())
    onnx_path = export_onnx(
        model, torch.rand(2, 1, 8, 8), tmp_path / "tiny.onnx",
        input_names=["image"], output_names=["p"], dynamic_axes={"image": {0: "batch"}},
    )  # fmt: skip
    out = package_for_tef(onnx_path, MANIFEST, tmp_path / "pkg")
    package = load_package(out)
    assert package.manifest.algorithm.model == "tiny.onnx"
    assert tomllib.loads((out / "manifest.toml").read_text())["output"]["name"] == "p"
    with pytest.raises(PackageError, match="not an empty folder"):
        package_for_tef(onnx_path, MANIFEST, out)
    assert load_package(out).sha256 == package.sha256  # refused: nothing changed


def test_invalid_manifest_leaves_no_package(tmp_path: Path) -> None:
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(b"not checked before the manifest")
    bad = {**MANIFEST, "output": {"name": "p", "meaning": "probability", "classes": 3}}
    with pytest.raises(PackageError, match="2 classes"):
        package_for_tef(onnx_path, bad, tmp_path / "pkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
