"""Algorithm packages: a folder with ``manifest.toml`` and an ONNX model or Python code.

The manifest names the algorithm, the tensor it takes (shape, dtype, layout), how the node must
preprocess pixels into it, and what its output means. A package is identified by the SHA-256
over its files. Validation checks the manifest and files here, then, in the sandbox, compares
the ONNX graph with the manifest and runs the algorithm once on a synthetic input; the provider's
code is never loaded into the node's own process.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationError, model_validator

from oncofed.errors import OncofedError
from oncofed.tef.sandbox import Invocation, Limits, SandboxRun, run_sandboxed
from oncofed.tef.spec import StrictModel, validation_problems

MANIFEST = "manifest.toml"
ENTRY_POINT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*$")
ONNX_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "uint8": "tensor(uint8)"}
PROBABILITY_TOLERANCE = 1e-3
DRY_RUN_CASES = 2
MAX_UNPACKED_BYTES = 2 << 30


class AlgorithmError(OncofedError):
    """An algorithm package is malformed or does not match its manifest."""

    code = "invalid_algorithm"


class AlgorithmInfo(StrictModel):
    """Who and what the algorithm is."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(min_length=1, max_length=32)
    kind: Literal["onnx", "python"]
    model: str = ""
    """ONNX file in the package (kind onnx)."""
    entry_point: str = ""
    """``module:function`` called with a batch array, returning scores (kind python)."""
    wheel: str = ""
    """A pure-Python wheel in the package that provides the entry point's module."""
    description: str = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind == "onnx" and (not self.model.endswith(".onnx") or self.entry_point):
            raise ValueError("kind onnx needs model = '<file>.onnx' and no entry_point")
        if self.kind == "python":
            if not ENTRY_POINT.match(self.entry_point) or self.model:
                raise ValueError("kind python needs entry_point = 'module:function' and no model")
            if self.wheel and not self.wheel.endswith(".whl"):
                raise ValueError(f"wheel {self.wheel!r} is not a .whl file")
        return self


class InputTensor(StrictModel):
    """The tensor the algorithm takes: a batch of cases (images, or one slide's tiles)."""

    kind: Literal["dicom-image", "wsi"]
    name: str = "image"
    shape: tuple[int, int, int, int]
    """Batch axis first, given as -1; e.g. [-1, 1, 64, 64] (NCHW)."""
    dtype: Literal["float32", "float64", "uint8"] = "float32"
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @property
    def channels(self) -> int:
        """Channels per image."""
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of each image."""
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else self.shape[1:3]


class Preprocessing(StrictModel):
    """How the node turns pixels into the input tensor."""

    window: tuple[float, float] | None = None
    """(center, width) of an intensity window, mapped to [0, 1] (after the modality LUT)."""
    normalise: Literal["minmax", "zscore", "unit", "none"] = "minmax"
    """Without a window: per image to [0, 1] (minmax), zero mean unit variance (zscore), /255
    (unit, for 8-bit data) or as stored (none)."""
    mpp: float | None = Field(default=None, gt=0)
    """Slides: micrometres per pixel of the tiles."""
    tile_aggregation: Literal["mean", "max"] = "mean"
    """Slides: how per-tile outputs become the slide's."""
    crop: Literal["none", "ultrasound-region"] = "none"
    """DICOM images: ``ultrasound-region`` crops to the largest 2D tissue region of the Sequence
    of Ultrasound Regions (text and scales around it left out) before resizing; an image without
    one is fed whole."""


class OutputTensor(StrictModel):
    """What the algorithm returns, one row per input image."""

    name: str = ""
    """Output name in the ONNX graph (kind onnx)."""
    meaning: Literal["probability", "class_probabilities", "ordinal_score"]
    """probability: P(positive class), shape [n] or [n, 1]; class_probabilities: [n, classes],
    rows summing to 1; ordinal_score: expected grade in [0, classes - 1], shape [n] or [n, 1]."""
    classes: int = Field(ge=2, le=64)


class Manifest(StrictModel):
    """``manifest.toml``."""

    algorithm: AlgorithmInfo
    input: InputTensor
    preprocessing: Preprocessing = Preprocessing()
    output: OutputTensor

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        shape = self.input.shape
        if shape[0] != -1 or min(shape[1:]) < 1:
            raise ValueError(f"input.shape {list(shape)}: first axis -1 (batch), others >= 1")
        if self.input.channels not in (1, 3):
            raise ValueError(f"input has {self.input.channels} channels; use 1 or 3")
        if self.input.kind == "wsi":
            if self.preprocessing.mpp is None or self.input.channels != 3:
                raise ValueError("wsi input needs preprocessing.mpp and 3 channels")
            if self.input.size[0] != self.input.size[1]:
                raise ValueError(f"wsi tiles are square, input size is {self.input.size}")
        if self.algorithm.kind == "onnx" and not self.output.name:
            raise ValueError("kind onnx needs output.name (the graph output to read)")
        if self.output.meaning == "probability" and self.output.classes != 2:
            raise ValueError("meaning 'probability' is for 2 classes")
        return self


@dataclass(frozen=True)
class AlgorithmPackage:
    """A loaded, statically checked package."""

    root: Path
    manifest: Manifest
    sha256: str

    @property
    def key(self) -> str:
        """``name@version``."""
        return f"{self.manifest.algorithm.name}@{self.manifest.algorithm.version}"

    def invocation(self) -> Invocation:
        """How the sandbox runs it."""
        info = self.manifest.algorithm
        return Invocation(
            package=self.root,
            kind=info.kind,
            model=info.model,
            entry_point=info.entry_point,
            wheel=info.wheel,
            input_name=self.manifest.input.name,
            output_name=self.manifest.output.name,
        )

    def check_output(self, array: NDArray[np.float64], cases: int) -> None:
        """Raise ``ValueError`` unless ``array`` is a valid output for ``cases`` inputs."""
        scores(self.manifest.output, array, cases)

    def to_dict(self) -> dict[str, Any]:
        """Identity for results: name, version, kind, sha256."""
        info = self.manifest.algorithm
        return {"name": info.name, "version": info.version, "kind": info.kind,
                "sha256": self.sha256}  # fmt: skip


def scores(output: OutputTensor, array: NDArray[np.float64], cases: int) -> NDArray[np.float64]:
    """The output as ``[n]`` (probability, ordinal score) or ``[n, classes]``; checks ranges."""
    if output.meaning == "class_probabilities":
        if array.shape != (cases, output.classes):
            raise ValueError(f"shape {array.shape}, expected ({cases}, {output.classes})")
        if array.min() < 0 or array.max() > 1:
            raise ValueError("class probabilities outside [0, 1]")
        worst = float(np.abs(array.sum(axis=1) - 1).max())
        if worst > PROBABILITY_TOLERANCE:
            raise ValueError(f"class probabilities of a case sum to 1 ± {worst:.3g}")
        return array
    if array.shape not in ((cases,), (cases, 1)):
        raise ValueError(f"shape {array.shape}, expected ({cases},) or ({cases}, 1)")
    flat = array.reshape(cases)
    high = 1.0 if output.meaning == "probability" else float(output.classes - 1)
    if flat.min() < 0 or flat.max() > high:
        raise ValueError(f"{output.meaning} outside [0, {high:g}]")
    return flat


def load_package(path: Path | str) -> AlgorithmPackage:
    """Read and statically check a package folder (manifest, files, no links)."""
    root = Path(path).resolve()  # the sandboxed child runs elsewhere: relative paths break
    if not (root / MANIFEST).is_file():
        raise AlgorithmError(f"{root}: not an algorithm package (no {MANIFEST})")
    try:
        data = tomllib.loads((root / MANIFEST).read_text(encoding="utf-8"))
        manifest = Manifest.model_validate(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AlgorithmError(f"{root / MANIFEST}: cannot read ({exc})") from exc
    except ValidationError as exc:
        raise AlgorithmError(f"{root / MANIFEST}: {validation_problems(exc)}") from exc
    _check_files(root, manifest.algorithm)
    return AlgorithmPackage(root, manifest, package_sha256(root))


def _check_files(root: Path, info: AlgorithmInfo) -> None:
    links = [p for p in root.rglob("*") if p.is_symlink()]
    if links:
        raise AlgorithmError(f"{root}: packages may not contain links ({links[0]})")
    needed = [f for f in (info.model, info.wheel) if f]
    if info.kind == "python" and not info.wheel:
        module = info.entry_point.split(":")[0].split(".")[0]
        if not (root / f"{module}.py").is_file() and not (root / module / "__init__.py").is_file():
            raise AlgorithmError(f"{root}: no {module}.py or {module}/ for {info.entry_point}")
    for name in needed:
        target = (root / name).resolve()
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            raise AlgorithmError(f"{root}: {name} is not a file inside the package")


def _package_files(root: Path) -> list[Path]:
    """The package's files in path order (byte-code caches are not part of it)."""
    files = (p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sorted(files)


def package_sha256(root: Path) -> str:
    """SHA-256 over every file's package-relative path and content hash, in path order."""
    digest = hashlib.sha256()
    for path in _package_files(root):
        with path.open("rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(f"{path.relative_to(root).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()


def run_algorithm(
    package: AlgorithmPackage,
    batches: Iterable[NDArray[Any]],
    *,
    limits: Limits | None = None,
    allow_network: bool = False,
    work_root: Path | None = None,
    hide: tuple[Path, ...] = (),
) -> SandboxRun:
    """Run the package in the sandbox; every output is validated against the manifest."""
    return run_sandboxed(
        package.invocation(),
        batches,
        package.check_output,
        limits=limits,
        allow_network=allow_network,
        work_root=work_root,
        hide=hide,
    )


@dataclass(frozen=True)
class ValidationReport:
    """A package that passed: its identity, graph and dry-run output."""

    package: AlgorithmPackage
    graph: dict[str, Any]
    dry_run_shape: tuple[int, ...]
    isolation: dict[str, Any]
    seconds: float


def synthetic_input(manifest: Manifest, cases: int = DRY_RUN_CASES) -> NDArray[Any]:
    """A seeded random batch shaped and typed like the manifest's input."""
    rng = np.random.default_rng(0)
    shape = (cases, *manifest.input.shape[1:])
    if manifest.input.dtype == "uint8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.random(shape).astype(manifest.input.dtype)


def validate_package(
    path: Path | str,
    *,
    limits: Limits | None = None,
    allow_network: bool = False,
    work_root: Path | None = None,
) -> ValidationReport:
    """Static checks, the ONNX graph against the manifest, then a sandboxed dry run."""
    package = load_package(path)
    graph: dict[str, Any] = {}
    if package.manifest.algorithm.kind == "onnx":
        described = run_algorithm(
            package, [], limits=limits, allow_network=allow_network, work_root=work_root
        )
        graph = described.graph
        check_graph(package.manifest, graph)
    dry = run_algorithm(
        package,
        [synthetic_input(package.manifest)],
        limits=limits,
        allow_network=allow_network,
        work_root=work_root,
    )
    return ValidationReport(
        package, graph, tuple(dry.outputs[0].shape), dry.isolation, round(dry.seconds, 3)
    )


def check_graph(manifest: Manifest, graph: dict[str, Any]) -> None:
    """The ONNX graph's one input and the named output must match the manifest."""
    inputs = {i["name"]: i for i in graph.get("inputs", [])}
    outputs = {o["name"] for o in graph.get("outputs", [])}
    wanted = manifest.input
    if set(inputs) != {wanted.name}:
        raise AlgorithmError(
            f"model inputs are {sorted(inputs)}; the manifest feeds exactly {[wanted.name]}"
        )
    found = inputs[wanted.name]
    if found["type"] != ONNX_TYPES[wanted.dtype]:
        raise AlgorithmError(
            f"model input {wanted.name!r} is {found['type']}, manifest says {wanted.dtype}"
        )
    shape = found["shape"]
    fixed = [(m, d) for m, d in zip(wanted.shape[1:], shape[1:], strict=False) if d is not None]
    if len(shape) != len(wanted.shape) or any(m != d for m, d in fixed):
        raise AlgorithmError(
            f"model input {wanted.name!r} has shape {shape}, manifest says {list(wanted.shape)}"
        )
    if manifest.output.name not in outputs:
        raise AlgorithmError(
            f"model has no output {manifest.output.name!r}; it has {sorted(outputs)}"
        )


def unpack_package(
    archive: bytes, packages_dir: Path, expected_sha256: str | None
) -> AlgorithmPackage:
    """A package shipped as a zip (e.g. in a hub task), unpacked once into
    ``packages_dir/<sha256>``; with ``expected_sha256`` it is accepted only if its content hash
    is that one (a node checks what the hub sent; the hub, receiving a submission, learns it)."""
    if expected_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", expected_sha256):
        raise AlgorithmError(f"expected package sha256 {expected_sha256!r} is not 64 hex digits")
    if expected_sha256 is not None and (packages_dir / expected_sha256).is_dir():
        return load_package(packages_dir / expected_sha256)
    packages_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=packages_dir))
    try:
        _extract(archive, staging)
        found = package_sha256(staging)
        if expected_sha256 is not None and found != expected_sha256:
            raise AlgorithmError(
                f"package content hash {found} is not the expected {expected_sha256}"
            )
        target = packages_dir / found
        if not target.is_dir():
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_package(target)


def zip_package(root: Path) -> bytes:
    """The package folder as a zip that :func:`unpack_package` restores to the same hash
    (members in path order with fixed timestamps, so equal packages give equal bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in _package_files(root):
            member = zipfile.ZipInfo(path.relative_to(root).as_posix(), (1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(member, path.read_bytes())
    return buffer.getvalue()


def _extract(archive: bytes, into: Path) -> None:
    """Regular files only, each inside ``into``, within a total size (no links, no escapes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            members = bundle.infolist()
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise AlgorithmError(f"package unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            for member in members:
                if member.is_dir():
                    continue
                target = (into / member.filename).resolve()
                is_link = stat.S_ISLNK(member.external_attr >> 16)
                if is_link or not target.is_relative_to(into.resolve()):
                    raise AlgorithmError(f"package member {member.filename!r} is a link or escapes")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(member))
    except (zipfile.BadZipFile, OSError) as exc:
        raise AlgorithmError(f"package archive is not a readable zip ({exc})") from exc
