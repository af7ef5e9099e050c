"""ONNX export of trained models, checked against PyTorch on the same inputs."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn
from torch.export import Dim

from oncofed.errors import OncofedError

OPSET = 18


class ExportError(OncofedError):
    """A model could not be exported, or its ONNX outputs differ from PyTorch's."""

    code = "export_error"


def export_onnx(
    model: nn.Module,
    example: Tensor | tuple[Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> Path:
    """Export ``model`` (in eval mode) to ``path`` atomically with torch's ``torch.export`` based
    exporter. ``dynamic_axes`` maps an input name to ``{axis: dimension name}``; inputs sharing a
    dimension name share its size, and output dimensions follow from the graph."""
    examples = (example,) if isinstance(example, Tensor) else example
    if len(examples) != len(input_names):
        raise ExportError(f"{len(examples)} example inputs but input names {list(input_names)}")
    unknown = set(dynamic_axes) - set(input_names) - set(output_names)
    if unknown:
        raise ExportError(f"dynamic_axes names {sorted(unknown)} are not inputs or outputs")
    dims = {name: Dim(name) for axes in dynamic_axes.values() for name in axes.values()}
    shapes = tuple(
        {axis: dims[dim] for axis, dim in dynamic_axes.get(name, {}).items()}
        for name in input_names
    )
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # torch 2.13's exporter trips its own pytree deprecation; nothing a caller can act on
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                model,
                examples,
                None,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=shapes,
                opset_version=OPSET,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises many unrelated types for untraceable models
        raise ExportError(f"{type(model).__name__}: ONNX export failed ({exc})") from exc
    finally:
        model.train(was_training)
    if program is None:
        raise ExportError(f"{type(model).__name__}: the exporter returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:16]}", suffix=".part")
    os.close(fd)
    try:
        program.save(tmp_name, external_data=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def check_onnx_matches(
    model: nn.Module,
    path: Path,
    inputs: Tensor | tuple[Tensor, ...],
    *,
    atol: float = 1e-4,
) -> float:
    """Run ``inputs`` through ``model`` and through the ONNX file with onnxruntime; return the
    largest absolute difference over all outputs, raising ``ExportError`` above ``atol``."""
    examples = (inputs,) if isinstance(inputs, Tensor) else inputs
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        spec.name: tensor.detach().numpy()
        for spec, tensor in zip(session.get_inputs(), examples, strict=True)
    }
    onnx_outputs = session.run(None, feeds)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        torch_outputs = model(*examples)
    model.train(was_training)
    expected = (torch_outputs,) if isinstance(torch_outputs, Tensor) else tuple(torch_outputs)
    if len(expected) != len(onnx_outputs):
        raise ExportError(
            f"{path}: {len(onnx_outputs)} ONNX outputs, PyTorch gives {len(expected)}"
        )
    worst = 0.0
    for name, want, got in zip(session.get_outputs(), expected, onnx_outputs, strict=True):
        if tuple(want.shape) != tuple(np.shape(got)):
            raise ExportError(
                f"{path}: output {name.name!r} has shape {np.shape(got)}, "
                f"PyTorch gives {tuple(want.shape)}"
            )
        worst = max(worst, float(np.max(np.abs(want.numpy() - got), initial=0.0)))
    if worst > atol:
        raise ExportError(f"{path}: ONNX outputs differ from PyTorch by {worst:.3g} > {atol:g}")
    return worst
