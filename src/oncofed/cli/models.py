"""`oncofed models`: train the reference pipelines, export them to ONNX / TEF packages, saliency."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oncofed.cli.options import JsonOption
from oncofed.errors import OncofedError

if TYPE_CHECKING:
    from oncofed.models.cli_support import LabelledFile
    from oncofed.node import Node

app = typer.Typer(help="Reference AI pipelines: train, export to ONNX and TEF packages, saliency.")
train_app = typer.Typer(help="Train a reference pipeline (CPU; seeded; resumable).")
app.add_typer(train_app, name="train")

OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Run folder: checkpoints, model.pt, history.json.")
]
EpochsOption = Annotated[int, typer.Option(help="Training epochs.")]
BatchOption = Annotated[int, typer.Option(help="Images per batch.")]
RateOption = Annotated[float, typer.Option("--learning-rate", help="AdamW learning rate.")]
SeedOption = Annotated[int, typer.Option(help="Seed of initialisation, split and shuffling.")]
ThreadsOption = Annotated[int, typer.Option(help="CPU threads for torch.")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")
]
HoldOutOption = Annotated[float, typer.Option(help="Share of patients held out for validation.")]
TrainNodeOption = Annotated[
    Path | None, typer.Option("--node", "-n", help="Node home to train from (with --cohort).")
]


@train_app.command("breast-us")
def train_breast_us(
    out: OutOption,
    node: TrainNodeOption = None,
    cohort: Annotated[
        str | None,
        typer.Option(help='Cohort filter as JSON, e.g. \'{"collection": ["breast-us"]}\'.'),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Folder of US DICOM files (with --labels).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Label CSV (patient_id,kind,value) with kind 'malignant' rows."),
    ] = None,
    epochs: EpochsOption = 12,
    batch_size: BatchOption = 16,
    learning_rate: RateOption = 3e-3,
    seed: SeedOption = 0,
    threads: ThreadsOption = 2,
    size: Annotated[int, typer.Option(help="Side of the square model input, pixels.")] = 64,
    validation_fraction: HoldOutOption = 0.2,
    resume: ResumeOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train the breast ultrasound classifier (benign/malignant) from a node's cohort or files."""
    _check_sources(node, cohort, images, labels, "--images")
    from oncofed.models.breast_us import pipeline
    from oncofed.models.breast_us.data import files_from_folder, files_from_node
    from oncofed.models.cli_support import (
        HISTORY_FILE,
        MODEL_FILE,
        check_output_dir,
        save_model,
        split_by_patient,
        write_json,
    )
    from oncofed.models.training import TrainConfig

    checkpoint_dir = check_output_dir(out, resume=resume)
    files = _training_files(node, cohort, images, labels, files_from_node, files_from_folder)
    train_files, validation_files = split_by_patient(files, validation_fraction, seed)
    settings = pipeline.BreastUSSettings(size=size)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        threads=threads,
        checkpoint_dir=checkpoint_dir,
    )
    model, history = pipeline.train(train_files, validation_files, config, settings)
    save_model(out / MODEL_FILE, pipeline.PIPELINE, settings.to_dict(), model)
    summary = {
        "pipeline": pipeline.PIPELINE,
        "cases": {"train": len(train_files), "validation": len(validation_files)},
        "validation_auroc_by_site": pipeline.auroc_by_site(model, validation_files, settings),
        **history.to_dict(),
    }
    write_json(out / HISTORY_FILE, summary)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    final = history.final
    typer.echo(
        f"trained {pipeline.PIPELINE} on {len(train_files)} images, "
        f"validated on {len(validation_files)}: AUROC {final.metric:.3f} after epoch "
        f"{final.epoch}; model {out / MODEL_FILE}"
    )


@train_app.command("prostate-isup")
def train_prostate_isup(
    out: OutOption,
    node: TrainNodeOption = None,
    cohort: Annotated[
        str | None,
        typer.Option(help='Cohort filter as JSON, e.g. \'{"collection": ["prostate"]}\'.'),
    ] = None,
    slides: Annotated[
        Path | None, typer.Option(help="Sample sheet CSV (path,patient_id,...) with --labels.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Label CSV (patient_id[,slide],kind,value), isup_grade.")
    ] = None,
    encoder: Annotated[
        Path | None,
        typer.Option(help="Pretrained tile encoder (.onnx or TorchScript); default: train a CNN."),
    ] = None,
    stain: Annotated[str, typer.Option(help="Stain normalisation: none or macenko.")] = "none",
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Stain jitter, flips, turns.")
    ] = True,
    epochs: EpochsOption = 15,
    learning_rate: RateOption = 2e-3,
    seed: SeedOption = 0,
    threads: ThreadsOption = 2,
    tile_size: Annotated[int, typer.Option(help="Tile side, pixels.")] = 32,
    mpp: Annotated[float, typer.Option(help="Tile resolution, micrometres per pixel.")] = 1.0,
    max_tiles: Annotated[int, typer.Option(help="Tiles per training bag (most tissue).")] = 64,
    validation_fraction: HoldOutOption = 0.25,
    resume: ResumeOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train the prostate biopsy grader (ISUP grade group 0-5, cancer yes/no) on slides."""
    _check_sources(node, cohort, slides, labels, "--slides")
    if stain not in ("none", "macenko"):
        raise OncofedError(f"--stain {stain!r}: use none or macenko")
    from oncofed.models.prostate import pipeline
    from oncofed.models.prostate.cases import files_from_node, files_from_sheet
    from oncofed.models.prostate.runs import train_run
    from oncofed.models.training import TrainConfig

    files = _training_files(node, cohort, slides, labels, files_from_node, files_from_sheet)
    settings = pipeline.ProstateSettings(
        tile_size=tile_size, mpp=mpp, max_tiles=max_tiles, augment=augment,
        encoder=str(encoder.resolve()) if encoder else pipeline.CNN,
        stain="macenko" if stain == "macenko" else "none",
    )  # fmt: skip
    config = TrainConfig(epochs=epochs, batch_size=1, learning_rate=learning_rate, seed=seed,
                         threads=threads)  # fmt: skip
    summary = train_run(out, files, settings, config, validation_fraction=validation_fraction,
                        resume=resume)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    final = summary["epochs"][-1]
    typer.echo(
        f"trained prostate-isup on {summary['cases']['train']} slides, validated on "
        f"{summary['cases']['validation']}: quadratic kappa {final['metric']:.3f} after epoch "
        f"{final['epoch']}; model {out / 'model.pt'}"
    )


def _check_sources(
    node: Path | None, cohort: str | None, files: Path | None, labels: Path | None, files_flag: str
) -> None:
    """Refuse anything but ``--node`` with ``--cohort``, or ``files_flag`` with ``--labels``."""
    if (
        (node is None) == (files is None)
        or (node is None) != (cohort is None)
        or (files is None) != (labels is None)
    ):
        raise OncofedError(f"give either --node and --cohort, or {files_flag} and --labels")


def _training_files(
    node: Path | None,
    cohort: str | None,
    files: Path | None,
    labels: Path | None,
    from_node: Callable[[Node, dict[str, Any]], list[LabelledFile]],
    from_files: Callable[[Path, Path], list[LabelledFile]],
) -> list[LabelledFile]:
    """The labelled files to train on: the cohort at ``node``, or ``files`` with ``labels``."""
    from oncofed.models.cli_support import parse_cohort
    from oncofed.node import Node

    if node is not None and cohort is not None:
        with Node(node, read_only=True) as opened:
            return from_node(opened, parse_cohort(cohort))
    assert files is not None and labels is not None
    return from_files(files, labels)


@app.command("grade")
def grade(
    model_file: Annotated[Path, typer.Argument(help="prostate-isup model.pt or its run folder.")],
    slide: Annotated[str, typer.Argument(help="Slide file, or a slide id with --node.")],
    node: Annotated[
        Path | None,
        typer.Option(
            "--node",
            "-n",
            help="Node home: grade its slide and keep the heatmap for the node's viewer.",
        ),
    ] = None,
    heatmap: Annotated[
        Path | None, typer.Option(help="Write the attention heatmap (Parquet) here.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Grade one whole slide (ISUP grade group, P(cancer)) with a per-tile attention heatmap."""
    from oncofed.models.prostate.runs import HEATMAP_NAME, grade_run, load_grader
    from oncofed.node import Node
    from oncofed.wsi.heatmap import HEATMAPS_DIR, SUFFIX

    grader = load_grader(model_file)
    path = Path(slide)
    if node is not None:
        with Node(node, read_only=True) as opened:
            row = opened.catalog.con.execute(
                "SELECT sha256 FROM slide WHERE slide_id = ?", [slide]
            ).fetchone()
            if row is None:
                raise OncofedError(f"node {node} has no slide with id {slide!r}")
            path = opened.store.path_for(str(row[0]))
        heatmap = heatmap or node / HEATMAPS_DIR / slide / f"{HEATMAP_NAME}{SUFFIX}"
    result = grade_run(grader, path, heatmap)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"ISUP grade group {result['isup_grade_group']} (P(cancer) {result['p_cancer']:.3f}) "
        f"from {result['tiles']} tiles" + (f"; heatmap {heatmap}" if heatmap else "")
    )


@app.command("export")
def export(
    model_file: Annotated[
        Path, typer.Argument(help="model.pt written by `oncofed models train`, or its run folder.")
    ],
    onnx: Annotated[Path | None, typer.Option(help="ONNX file to write.")] = None,
    package: Annotated[
        Path | None, typer.Option(help="Also write a TEF algorithm package folder here.")
    ] = None,
    name: Annotated[str, typer.Option(help="Algorithm name in the package.")] = "",
    version: Annotated[str, typer.Option(help="Algorithm version in the package.")] = "1",
    as_json: JsonOption = False,
) -> None:
    """Export a trained model to ONNX (checked against PyTorch within 1e-4) and package it."""
    from oncofed.models.cli_support import MODEL_FILE, ONNX_FILE, export_saved_model

    _quiet_exporter_logs()  # after torch's import, which sets its loggers' levels
    path = model_file / MODEL_FILE if model_file.is_dir() else model_file
    target = onnx or path.with_name(ONNX_FILE)
    result = export_saved_model(path, target, package, name=name, version=version)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"wrote {target} (max |ONNX - PyTorch| = {result['max_abs_difference']:.2e})")
    if package is not None:
        typer.echo(f"wrote TEF package {result['package']}")


@app.command("saliency")
def saliency(
    model_file: Annotated[Path, typer.Argument(help="Breast-US model.pt or its run folder.")],
    image: Annotated[Path, typer.Argument(help="Ultrasound DICOM file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
) -> None:
    """Grad-CAM saliency of the breast-US classifier over one image, as a PNG overlay."""
    from oncofed.models.breast_us import pipeline as breast_us
    from oncofed.models.breast_us.gradcam import grad_cam, overlay_png
    from oncofed.models.breast_us.preprocess import prepare, read_dicom, region_pixels
    from oncofed.models.cli_support import MODEL_FILE, load_model_file

    path = model_file / MODEL_FILE if model_file.is_dir() else model_file
    kind, settings_dict, state = load_model_file(path)
    if kind != breast_us.PIPELINE:
        raise OncofedError(f"{path}: saliency maps are for {breast_us.PIPELINE!r}, not {kind!r}")
    model, settings = breast_us.restore(settings_dict, state)
    ds = read_dicom(image)
    heatmap, probability = grad_cam(model, prepare(ds, size=settings.size, source=str(image)))
    overlay_png(region_pixels(ds, str(image)) / 255.0, heatmap, out)
    typer.echo(f"P(malignant) = {probability:.3f}; saliency overlay {out}")


def _quiet_exporter_logs() -> None:
    """The ONNX exporter logs every graph pass at INFO and warns that torchvision (not used
    here) is missing; keep the command's output to what it did."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
