"""Packaging an exported ONNX model as a TEF algorithm (``oncofed.tef.algorithm``'s format)."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import tomli_w

from oncofed.errors import OncofedError
from oncofed.tef.algorithm import MANIFEST, AlgorithmPackage, load_package


class PackageError(OncofedError):
    """An algorithm package could not be written."""

    code = "package_error"


def package_for_tef(onnx_path: Path, manifest: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir`` holding the ONNX file and ``manifest.toml``; return ``out_dir``.

    ``manifest`` follows ``oncofed.tef.algorithm.Manifest``; ``algorithm.kind`` and
    ``algorithm.model`` are filled in from ``onnx_path``. The folder appears whole or not at all,
    and is checked by the facility's own loader before it is moved into place.
    """
    if not onnx_path.is_file():
        raise PackageError(f"{onnx_path}: no such ONNX file")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PackageError(f"{out_dir}: exists and is not an empty folder")
    filled = copy.deepcopy(manifest)
    info = filled.setdefault("algorithm", {})
    info["kind"] = "onnx"
    info["model"] = onnx_path.name
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name[:16]}"))
    try:
        shutil.copyfile(onnx_path, staging / onnx_path.name)
        (staging / MANIFEST).write_text(tomli_w.dumps(filled), encoding="utf-8")
        _load(staging, out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _load(staging: Path, out_dir: Path) -> AlgorithmPackage:
    try:
        return load_package(staging)
    except OncofedError as exc:
        message = exc.message.replace(str(staging), str(out_dir))
        raise PackageError(f"not a valid algorithm package: {message}") from exc
