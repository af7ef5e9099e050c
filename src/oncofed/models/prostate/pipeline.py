"""Train, run on whole slides, export and package the prostate biopsy grader.

The slide's grade group is an ordinal target trained with CORN (see ``ordinal``); the predicted
grade group is the most probable one and P(cancer) is P(grade group > 0). With the default
encoder the tile CNN and the attention aggregator train end to end on bags of tiles; with a
pretrained encoder file, tile features are computed once and only the aggregator trains.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from oncofed.errors import OncofedError
from oncofed.models.cli_support import Exportable, LabelledFile
from oncofed.models.export import ExportError, check_onnx_matches, export_onnx
from oncofed.models.package import package_for_tef
from oncofed.models.prostate.bags import (
    STAIN_SAMPLE,
    FeatureBags,
    TileBags,
    TileSettings,
    iterate_tiles,
    load_bags,
    normalise,
    one_bag,
    read_tiles,
    slide_grid,
    slide_stains,
    spread,
    to_tensor,
)
from oncofed.models.prostate.encoders import EncoderError, FrozenEncoder, file_sha256
from oncofed.models.prostate.network import ExportedGrader, SlideGrader, TileCNN
from oncofed.models.prostate.ordinal import (
    GRADES,
    cancer_auroc,
    corn_loss,
    grade_probabilities,
    quadratic_kappa,
)
from oncofed.models.prostate.stain_graph import BagMacenko
from oncofed.models.stain import MacenkoNormaliser, Stains
from oncofed.models.training import TrainConfig, TrainHistory, fit, predict, seed_everything
from oncofed.wsi.tiling import TileGrid

PIPELINE = "prostate-isup"
INPUT_NAME = "tiles"
OUTPUTS = ("grade_probabilities", "p_cancer", "attention")
CNN = "cnn"
INFERENCE_CHUNK = 512


@dataclass(frozen=True)
class ProstateSettings:
    """What rebuilds the model and its input: tiles, encoder, stain handling."""

    tile_size: int = 32
    mpp: float = 1.0
    min_tissue: float = 0.5
    max_tiles: int = 64
    """Training bags keep this many tiles with the most tissue; inference uses every tile."""
    width: int = 16
    """Width of the default tile CNN."""
    encoder: str = CNN
    """``cnn`` (trained from scratch) or the path of a pretrained ONNX/TorchScript encoder."""
    encoder_sha256: str = ""
    features: int = 0
    stain: Literal["none", "macenko"] = "none"
    reference_stains: dict[str, Any] | None = None
    augment: bool = True
    """Stain jitter, flips and quarter turns while training (tile CNN only)."""

    @property
    def tiles(self) -> TileSettings:
        """How slides are tiled."""
        return TileSettings(self.tile_size, self.mpp, self.min_tissue)

    def normaliser(self) -> MacenkoNormaliser | None:
        """The Macenko normaliser towards the saved reference, when stain normalisation is on."""
        if self.stain == "none":
            return None
        if self.reference_stains is None:
            raise OncofedError("stain normalisation is on but no reference stains are set")
        return MacenkoNormaliser(Stains.from_dict(self.reference_stains))

    def to_dict(self) -> dict[str, Any]:
        """For the saved model file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProstateSettings:
        """Settings saved with a model."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise OncofedError(
                f"saved settings {sorted(data)} are not {PIPELINE} settings ({exc})"
            ) from exc


class _FrozenFeatures(nn.Module):
    """A frozen encoder file as a module (eager only: it runs outside torch)."""

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, tiles: Tensor) -> Tensor:
        return torch.from_numpy(self.encoder(tiles.numpy()))


@dataclass
class Grader:
    """A trained (or freshly built) model with its settings and, if any, its frozen encoder."""

    settings: ProstateSettings
    network: SlideGrader
    encoder: FrozenEncoder | None = None

    def encode(self, tiles: NDArray[np.float32]) -> NDArray[np.float32]:
        """Tile features ``[n, d]`` of tiles ``[n, 3, s, s]``."""
        if self.encoder is not None:
            return self.encoder(tiles)
        assert self.network.encoder is not None
        with torch.inference_mode():
            features: Tensor = self.network.encoder(torch.from_numpy(tiles))
        return features.numpy()

    def eager(self) -> SlideGrader:
        """Tiles to logits in PyTorch, frozen encoder included."""
        if self.encoder is None:
            return self.network
        whole = SlideGrader(_FrozenFeatures(self.encoder), self.settings.features)
        whole.mil = self.network.mil
        return whole.eval()


def build(settings: ProstateSettings, seed: int = 0) -> Grader:
    """A seeded, freshly initialised grader for ``settings`` (frozen encoder loaded)."""
    seed_everything(seed)
    if settings.encoder == CNN:
        cnn = TileCNN(settings.width)
        return Grader(replace(settings, features=cnn.features), SlideGrader(cnn, cnn.features))
    path = Path(settings.encoder)
    digest = file_sha256(path) if path.is_file() else ""
    if settings.encoder_sha256 and digest and settings.encoder_sha256 != digest:
        raise EncoderError(
            f"{path}: content differs from the encoder this model was trained with "
            f"(sha256 {digest[:12]}..., expected {settings.encoder_sha256[:12]}...)"
        )
    encoder = FrozenEncoder(path, settings.tile_size)
    fixed = replace(settings, features=encoder.features, encoder_sha256=digest, augment=False)
    return Grader(fixed, SlideGrader(None, encoder.features), encoder)


def restore(settings: dict[str, Any], state: dict[str, Any]) -> Grader:
    """Rebuild a trained grader from its saved settings and weights."""
    grader = build(ProstateSettings.from_dict(settings))
    grader.network.load_state_dict(state)
    grader.network.eval()
    return grader


def with_reference(
    settings: ProstateSettings, files: Sequence[LabelledFile]
) -> ProstateSettings:  # fmt: skip
    """Settings whose Macenko reference is estimated from the first slide of ``files`` that
    holds enough stain (in patient order), when normalisation is on and no reference is set."""
    if settings.stain == "none" or settings.reference_stains is not None:
        return settings
    for file in sorted(files, key=lambda f: (f.patient, str(f.path))):
        grid = spread(slide_grid(file.path, settings.tiles), STAIN_SAMPLE)
        stains = slide_stains(read_tiles(file.path, grid)) if len(grid) else None
        if stains is not None:
            return replace(settings, reference_stains=stains.to_dict())
    raise OncofedError("no training slide holds enough stained tissue to fit a stain reference")


def datasets(
    grader: Grader, files: Sequence[LabelledFile], *, training: bool
) -> TileBags | FeatureBags:
    """The bags of ``files`` as the grader trains on them."""
    settings = grader.settings
    bags = load_bags(files, settings.tiles, settings.max_tiles, settings.normaliser())
    if not bags:
        raise OncofedError(f"none of {len(files)} slide(s) has a tile with enough tissue")
    if grader.encoder is not None:
        return FeatureBags(bags, grader.encoder)
    return TileBags(bags, augment=training and settings.augment)


def train(
    train_files: Sequence[LabelledFile],
    validation_files: Sequence[LabelledFile],
    config: TrainConfig,
    settings: ProstateSettings = ProstateSettings(),
) -> tuple[Grader, TrainHistory]:
    """Train from scratch (or resume from ``config.checkpoint_dir``); quadratic kappa per
    epoch. Bags train one slide per step, whatever ``config.batch_size`` says."""
    grader = build(with_reference(settings, train_files), config.seed)
    history = fit(
        grader.network,
        datasets(grader, train_files, training=True),
        datasets(grader, validation_files, training=False),
        config=replace(config, batch_size=1),
        loss=corn_loss,
        metric=quadratic_kappa,
        metric_name="quadratic_kappa",
        collate=one_bag,
    )
    grader.network.eval()
    return grader, history


def evaluate(grader: Grader, files: Sequence[LabelledFile]) -> dict[str, float | None]:
    """Quadratic kappa and cancer AUROC of ``files`` (None where undefined)."""
    targets, logits = predict(
        grader.network, datasets(grader, files, training=False), batch_size=1, collate=one_bag
    )
    auroc = cancer_auroc(targets, logits)
    return {
        "quadratic_kappa": round(quadratic_kappa(targets, logits), 4),
        "cancer_auroc": None if np.isnan(auroc) else round(auroc, 4),
        "slides": len(targets),
    }


def evaluate_by_site(
    grader: Grader, files: Sequence[LabelledFile]
) -> dict[str, dict[str, float | None]]:
    """:func:`evaluate` per site."""
    return {site: evaluate(grader, [f for f in files if f.site == site])
            for site in sorted({f.site for f in files})}  # fmt: skip


@dataclass(frozen=True)
class SlideResult:
    """Whole-slide inference: grade-group probabilities, P(cancer) and per-tile attention."""

    probabilities: NDArray[np.float64]
    grid: TileGrid
    attention: NDArray[np.float32]

    @property
    def grade_group(self) -> int:
        """The most probable grade group."""
        return int(self.probabilities.argmax())

    @property
    def p_cancer(self) -> float:
        """P(grade group > 0)."""
        return float(self.probabilities[1:].sum())


def infer_slide(
    grader: Grader,
    path: Path,
    *,
    chunk: int = INFERENCE_CHUNK,
    encode: Callable[[NDArray[np.float32]], NDArray[np.float32]] | None = None,
) -> SlideResult:
    """Tile every tissue tile of the slide at ``path``, encode them chunk by chunk (never the
    whole slide in memory) and aggregate; stains are estimated from tiles spread over it.
    ``encode`` replaces the grader's own encoder (e.g. its ONNX export in onnxruntime)."""
    encode = encode or grader.encode
    settings = grader.settings
    grid = slide_grid(path, settings.tiles)
    if not len(grid):
        raise OncofedError(f"{path}: no tile with at least {settings.min_tissue:.0%} tissue")
    normaliser, stains = settings.normaliser(), None
    if normaliser is not None:
        stains = slide_stains(read_tiles(path, spread(grid, STAIN_SAMPLE)))
    features = []
    for tiles in iterate_tiles(path, grid, chunk):
        if normaliser is not None:
            tiles = normalise(tiles, normaliser, stains)
        features.append(encode(to_tensor(tiles).numpy()))
    with torch.inference_mode():
        logits, attention = grader.network.mil(torch.from_numpy(np.concatenate(features)))
        probabilities = grade_probabilities(logits.double())[0].numpy()
    return SlideResult(probabilities, grid, attention.numpy())


def export(grader: Grader, path: Path) -> float:
    """Export tiles -> (grade probabilities, P(cancer), attention) with a dynamic bag size to
    ONNX at ``path``, stain normaliser and frozen encoder included; return its largest
    difference from PyTorch on seeded tiles."""
    size = grader.settings.tile_size
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(7, 3, size, size, generator=generator)
    check = torch.rand(23, 3, size, size, generator=generator)
    normaliser = _graph_normaliser(grader.settings)
    if grader.encoder is None:
        wrapped = ExportedGrader(grader.network, normaliser).eval()
        export_onnx(wrapped, example, path, input_names=[INPUT_NAME], output_names=OUTPUTS,
                    dynamic_axes={INPUT_NAME: {0: "tiles"}})  # fmt: skip
    else:
        _export_with_frozen_encoder(grader, normaliser, example, path)
        wrapped = ExportedGrader(grader.eager(), normaliser).eval()
    return check_onnx_matches(wrapped, path, check)


def _graph_normaliser(settings: ProstateSettings) -> BagMacenko | None:
    normaliser = settings.normaliser()
    return None if normaliser is None else BagMacenko(normaliser.reference).eval()


def _export_with_frozen_encoder(
    grader: Grader, normaliser: BagMacenko | None, example: Tensor, path: Path
) -> None:
    """Normaliser (if any), the encoder's own graph and the aggregator (exported on features),
    joined into one graph."""
    assert grader.encoder is not None
    features = torch.rand(7, grader.settings.features, generator=torch.Generator().manual_seed(0))
    parts: list[onnx.ModelProto] = []
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        if normaliser is not None:
            export_onnx(normaliser, example, Path(scratch) / "stain.onnx",
                        input_names=[INPUT_NAME], output_names=["normalised"],
                        dynamic_axes={INPUT_NAME: {0: "tiles"}})  # fmt: skip
            parts.append(onnx.load(str(Path(scratch) / "stain.onnx")))
        parts.append(grader.encoder.to_onnx(Path(scratch) / "encoder.onnx"))
        export_onnx(ExportedGrader(grader.network).eval(), features, Path(scratch) / "head.onnx",
                    input_names=["features"], output_names=OUTPUTS,
                    dynamic_axes={"features": {0: "tiles"}})  # fmt: skip
        parts.append(onnx.load(str(Path(scratch) / "head.onnx")))
    ir_version = max(part.ir_version for part in parts)  # a newer IR reads older graphs
    try:
        merged = None
        for index, part in enumerate(parts):
            part.ir_version = ir_version
            part = onnx.compose.add_prefix(part, f"part{index}/")
            if merged is None:
                merged = part
                continue
            link = [(merged.graph.output[0].name, part.graph.input[0].name)]
            merged = onnx.compose.merge_models(merged, part, io_map=link)
        assert merged is not None
        _rename(merged, merged.graph.input[0].name, INPUT_NAME)
        for output, name in zip(merged.graph.output, OUTPUTS, strict=True):
            _rename(merged, output.name, name)
        onnx.checker.check_model(merged)
    except (ValueError, onnx.checker.ValidationError) as exc:
        raise ExportError(
            f"{grader.encoder.path}: cannot join the encoder's graph to the aggregator ({exc})"
        ) from exc
    path.write_bytes(merged.SerializeToString())


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a graph input or output everywhere it is used."""
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def manifest(
    settings: ProstateSettings, *, name: str, version: str, target: Literal["isup", "cancer"]
) -> dict[str, Any]:
    """TEF manifest: a slide's bag of RGB tiles (/255) in; per tile row, the slide's
    grade-group probabilities (``isup``) or P(cancer) (``cancer``), averaged by the facility."""
    output = (
        {"name": OUTPUTS[0], "meaning": "class_probabilities", "classes": GRADES}
        if target == "isup"
        else {"name": OUTPUTS[1], "meaning": "probability", "classes": 2}
    )
    return {
        "algorithm": {
            "name": name,
            "version": version,
            "kind": "onnx",
            "description": "oncofed reference prostate biopsy grader: tile encoder, gated "
            f"attention MIL, ISUP grade group 0-5 (CORN); encoder {Path(settings.encoder).name}",
        },
        "input": {
            "kind": "wsi",
            "name": INPUT_NAME,
            "shape": [-1, 3, settings.tile_size, settings.tile_size],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "preprocessing": {"normalise": "unit", "mpp": settings.mpp, "tile_aggregation": "mean"},
        "output": output,
    }


def package(
    onnx_path: Path,
    settings: ProstateSettings,
    out_dir: Path,
    *,
    name: str,
    version: str,
    target: Literal["isup", "cancer"] = "isup",
) -> Path:
    """The exported model as a TEF algorithm package."""
    return package_for_tef(
        onnx_path, manifest(settings, name=name, version=version, target=target), out_dir
    )


def exportable(settings: dict[str, Any], state: dict[str, Any]) -> Exportable:
    """A saved model's exporters, for ``oncofed models export`` (packaged for ISUP grading)."""
    grader = restore(settings, state)
    return Exportable(
        export=lambda onnx_path: export(grader, onnx_path),
        package=lambda onnx_path, out_dir, name, version: package(
            onnx_path, grader.settings, out_dir, name=name, version=version
        ),
    )
