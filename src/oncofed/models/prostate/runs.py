"""What the ``oncofed models`` prostate commands do: a training run into a folder, and grading
one slide with its attention heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from oncofed.errors import OncofedError
from oncofed.models.cli_support import (
    HISTORY_FILE,
    MODEL_FILE,
    LabelledFile,
    check_output_dir,
    load_model_file,
    save_model,
    split_by_patient,
    write_json,
)
from oncofed.models.prostate import pipeline
from oncofed.models.training import TrainConfig
from oncofed.wsi.heatmap import TileHeatmap
from oncofed.wsi.open import open_slide

HEATMAP_NAME = "attention"


def train_run(
    out: Path,
    files: Sequence[LabelledFile],
    settings: pipeline.ProstateSettings,
    config: TrainConfig,
    *,
    validation_fraction: float,
    resume: bool,
) -> dict[str, Any]:
    """Split by patient, train (resuming from ``out`` if asked), save ``model.pt`` and
    ``history.json`` (with held-out kappa and cancer AUROC per site); returns the summary."""
    checkpoints = check_output_dir(out, resume=resume)
    train_files, validation_files = split_by_patient(files, validation_fraction, config.seed)
    grader, history = pipeline.train(
        train_files, validation_files, replace(config, checkpoint_dir=checkpoints), settings
    )
    save_model(out / MODEL_FILE, pipeline.PIPELINE, grader.settings.to_dict(), grader.network)
    summary = {
        "pipeline": pipeline.PIPELINE,
        "synthetic_data_warning": "figures on generated slides are synthetic, not clinical",
        "cases": {"train": len(train_files), "validation": len(validation_files)},
        "settings": {k: v for k, v in grader.settings.to_dict().items() if k != "reference_stains"},
        "validation_by_site": pipeline.evaluate_by_site(grader, validation_files),
        **history.to_dict(),
    }
    write_json(out / HISTORY_FILE, summary)
    return summary


def load_grader(model_file: Path) -> pipeline.Grader:
    """A saved prostate grader (``model.pt`` or its run folder)."""
    path = model_file / MODEL_FILE if model_file.is_dir() else model_file
    kind, settings, state = load_model_file(path)
    if kind != pipeline.PIPELINE:
        raise OncofedError(f"{path}: a {kind!r} model, not {pipeline.PIPELINE!r}")
    return pipeline.restore(settings, state)


def grade_run(grader: pipeline.Grader, slide: Path, heatmap: Path | None) -> dict[str, Any]:
    """Whole-slide inference; writes the attention heatmap to ``heatmap`` when given."""
    result = pipeline.infer_slide(grader, slide)
    if heatmap is not None:
        with open_slide(slide) as opened:
            width, height = opened.dimensions
        TileHeatmap(
            result.grid.x, result.grid.y, result.attention * len(result.attention),
            result.grid.spec.extent, width, height,
            description="attention of the prostate grader per tile, relative to uniform",
        ).write(heatmap)  # fmt: skip
    return {
        "slide": str(slide),
        "tiles": len(result.grid),
        "isup_grade_group": result.grade_group,
        "p_cancer": round(result.p_cancer, 4),
        "grade_group_probabilities": [round(float(p), 4) for p in result.probabilities],
        "heatmap": None if heatmap is None else str(heatmap),
    }
