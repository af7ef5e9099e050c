"""Train, evaluate, export and package the breast ultrasound classifier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score
from torch import nn

from oncofed.models.breast_us.data import UltrasoundDataset
from oncofed.models.breast_us.model import Probability, UltrasoundNet, example_frames
from oncofed.models.breast_us.preprocess import INPUT_SIZE
from oncofed.models.cli_support import Exportable, LabelledFile
from oncofed.models.export import check_onnx_matches, export_onnx
from oncofed.models.package import package_for_tef
from oncofed.models.training import TrainConfig, TrainHistory, fit, predict, seed_everything

PIPELINE = "breast-us"
INPUT_NAME = "image"
OUTPUT_NAME = "p_malignant"


@dataclass(frozen=True)
class BreastUSSettings:
    """What rebuilds the model: input side and network width."""

    size: int = INPUT_SIZE
    width: int = 16

    @property
    def frame(self) -> int:
        """Side of the whole frames the exported model takes (it crops them itself)."""
        return 2 * self.size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreastUSSettings:
        """Settings saved with a model."""
        return cls(size=int(data["size"]), width=int(data["width"]))

    def to_dict(self) -> dict[str, Any]:
        """For the saved model file."""
        return asdict(self)


def restore(
    settings: dict[str, Any], state: dict[str, Any]
) -> tuple[UltrasoundNet, BreastUSSettings]:
    """Rebuild a trained model from its saved settings and weights."""
    parsed = BreastUSSettings.from_dict(settings)
    model = UltrasoundNet(width=parsed.width)
    model.load_state_dict(state)
    return model.eval(), parsed


def auroc(targets: NDArray[Any], outputs: NDArray[Any]) -> float:
    """Area under the ROC curve of logits or probabilities; NaN when one class is missing."""
    if len(np.unique(targets)) < 2:
        return float("nan")
    return float(roc_auc_score(targets, outputs))


def build_model(settings: BreastUSSettings, seed: int = 0) -> UltrasoundNet:
    """A freshly (seeded) initialised network."""
    seed_everything(seed)
    return UltrasoundNet(width=settings.width)


def train(
    train_files: Sequence[LabelledFile],
    validation_files: Sequence[LabelledFile],
    config: TrainConfig,
    settings: BreastUSSettings = BreastUSSettings(),
) -> tuple[UltrasoundNet, TrainHistory]:
    """Train from scratch (or resume from ``config.checkpoint_dir``); AUROC per epoch."""
    model = build_model(settings, config.seed)
    history = fit(
        model,
        UltrasoundDataset(train_files, size=settings.size, augment=True),
        UltrasoundDataset(validation_files, size=settings.size),
        config=config,
        loss=nn.BCEWithLogitsLoss(),
        metric=auroc,
        metric_name="auroc",
    )
    return model, history


def probabilities(
    model: UltrasoundNet, files: Sequence[LabelledFile], settings: BreastUSSettings
) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """``(targets, P(malignant))`` for ``files``, in order."""
    targets, logits = predict(model, UltrasoundDataset(files, size=settings.size), batch_size=64)
    return targets, 1 / (1 + np.exp(-logits.astype(np.float64)))


def auroc_by_site(
    model: UltrasoundNet, files: Sequence[LabelledFile], settings: BreastUSSettings
) -> dict[str, float | None]:
    """AUROC of ``files`` per site (None where a site has one class only)."""
    result: dict[str, float | None] = {}
    for site in sorted({f.site for f in files}):
        targets, scores = probabilities(model, [f for f in files if f.site == site], settings)
        value = auroc(targets, scores)
        result[site] = None if np.isnan(value) else round(value, 4)
    return result


def manifest(settings: BreastUSSettings, *, name: str, version: str) -> dict[str, Any]:
    """The TEF manifest: a whole 1-channel frame (square, /255) in, P(malignant) out."""
    return {
        "algorithm": {
            "name": name,
            "version": version,
            "kind": "onnx",
            "description": "oncofed reference breast ultrasound classifier (P(malignant)) on "
            "de-identified frames; crops to the imaging region itself",
        },
        "input": {
            "kind": "dicom-image",
            "name": INPUT_NAME,
            "shape": [-1, 1, settings.frame, settings.frame],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "preprocessing": {"normalise": "unit"},
        "output": {"name": OUTPUT_NAME, "meaning": "probability", "classes": 2},
    }


def export(model: UltrasoundNet, settings: BreastUSSettings, path: Path) -> float:
    """Export P(malignant) of whole frames (:class:`Probability`) to ONNX at ``path``; return
    its largest difference from PyTorch."""
    wrapped = Probability(model, settings.size).eval()
    export_onnx(
        wrapped,
        example_frames(2, settings.frame),
        path,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}},
    )
    return check_onnx_matches(wrapped, path, example_frames(5, settings.frame))


def package(
    onnx_path: Path, settings: BreastUSSettings, out_dir: Path, *, name: str, version: str
) -> Path:
    """The exported model as a TEF algorithm package."""
    return package_for_tef(onnx_path, manifest(settings, name=name, version=version), out_dir)


def exportable(settings: dict[str, Any], state: dict[str, Any]) -> Exportable:
    """A saved model's exporters, for ``oncofed models export``."""
    model, parsed = restore(settings, state)
    return Exportable(
        export=lambda onnx_path: export(model, parsed, onnx_path),
        package=lambda onnx_path, out_dir, name, version: package(
            onnx_path, parsed, out_dir, name=name, version=version
        ),
    )
