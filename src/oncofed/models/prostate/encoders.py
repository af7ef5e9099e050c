"""Pretrained tile encoders from a local file: ONNX (onnxruntime), a ``torch.export`` program
(``.pt2``) or TorchScript (torch.jit).

An encoder file maps a batch of RGB tiles ``[n, 3, s, s]`` in [0, 1] to features ``[n, d]``
(``[n, d, 1, 1]`` is flattened). Nothing is downloaded: foundation-model weights are exported to
one of these formats beforehand and the file is named on the command line. Frozen encoders are
run once per tile before training (only the aggregator trains) and are merged into the exported
ONNX graph in front of the aggregator.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from torch import nn

from oncofed.errors import OncofedError
from oncofed.models.export import OPSET

ONNX_SUFFIXES = (".onnx",)
PROGRAM_SUFFIXES = (".pt2",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


class EncoderError(OncofedError):
    """An encoder file is missing, of an unknown kind, or does not map tiles to features."""

    code = "encoder_error"


def file_sha256(path: Path) -> str:
    """Content hash of an encoder file (saved with a model so the same file is used again)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class FrozenEncoder:
    """A pretrained encoder file, run in inference mode on NumPy batches."""

    def __init__(self, path: Path, tile_size: int) -> None:
        if not path.is_file():
            raise EncoderError(f"{path}: no such encoder file")
        self.path, self.tile_size = path, tile_size
        suffix = path.suffix.lower()
        self._program: torch.export.ExportedProgram | None = None
        self._module: nn.Module | None = None
        if suffix in ONNX_SUFFIXES:
            self._session = _onnx_session(path)
        elif suffix in PROGRAM_SUFFIXES:
            self._program = _program(path)
            self._module = self._program.module()
        elif suffix in TORCHSCRIPT_SUFFIXES:
            self._module = _torchscript(path)
        else:
            known = ", ".join(ONNX_SUFFIXES + PROGRAM_SUFFIXES + TORCHSCRIPT_SUFFIXES)
            raise EncoderError(f"{path}: unknown encoder format {suffix!r} (use {known})")
        probe = self(np.full((2, 3, tile_size, tile_size), 0.5, np.float32))
        self.features = int(probe.shape[1])

    def __call__(self, tiles: NDArray[np.float32]) -> NDArray[np.float32]:
        """Features ``[n, d]`` of tiles ``[n, 3, s, s]``."""
        try:
            if self._module is not None:
                with torch.inference_mode():
                    output = self._module(torch.from_numpy(tiles)).numpy()
            else:
                name = self._session.get_inputs()[0].name
                output = self._session.run(None, {name: tiles})[0]
        except Exception as exc:  # runtimes raise many types for a wrong input shape or dtype
            raise EncoderError(
                f"{self.path}: fails on tiles of shape {list(tiles.shape)} ({exc})"
            ) from exc
        features = np.asarray(output, np.float32)
        if features.ndim == 4 and features.shape[2:] == (1, 1):
            features = features[:, :, 0, 0]
        if features.ndim != 2 or features.shape[0] != len(tiles):
            raise EncoderError(
                f"{self.path}: gives shape {list(features.shape)} for {len(tiles)} tiles; "
                "an encoder must give [tiles, features]"
            )
        return features

    def to_onnx(self, out: Path) -> onnx.ModelProto:
        """The encoder as an ONNX graph at the exporter's opset (torch files are converted)."""
        if self._module is None:
            model = onnx.load(str(self.path))
        else:
            example = torch.full((2, 3, self.tile_size, self.tile_size), 0.5)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                torch.onnx.export(
                    self._program or self._module, (example,), str(out),
                    input_names=["tiles"], output_names=["features"],
                    dynamic_axes=None if self._program else {"tiles": {0: "tiles"}},
                    opset_version=OPSET, dynamo=self._program is not None,
                )  # fmt: skip
            model = onnx.load(str(out))
        current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if current != OPSET:
            model = onnx.version_converter.convert_version(model, OPSET)
        return model


def _onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise EncoderError(f"{path}: not a loadable ONNX model ({exc})") from exc
    if len(session.get_inputs()) != 1:
        names = [i.name for i in session.get_inputs()]
        raise EncoderError(f"{path}: an encoder takes one input (tiles), this one takes {names}")
    return session


def _program(path: Path) -> torch.export.ExportedProgram:
    try:
        return torch.export.load(str(path))
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderError(f"{path}: not a torch.export program ({first})") from exc


def _torchscript(path: Path) -> torch.jit.ScriptModule:
    try:
        module: Any = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as exc:
        raise EncoderError(f"{path}: not a TorchScript file ({str(exc).splitlines()[0]})") from exc
    return module.eval()  # type: ignore[no-any-return]
