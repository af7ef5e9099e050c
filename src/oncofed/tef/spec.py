"""Benchmark specifications: a versioned file naming what is evaluated, on which cases, how scored.

A spec is YAML, JSON or TOML; the same fields in each. It is validated when loaded (every problem
reported with its field path), and identified by ``id``, ``version`` and the SHA-256 of its
canonical JSON form, so a result can always name exactly the benchmark it answers.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oncofed.catalog.filters import parse_filter
from oncofed.catalog.labels import normalise_label
from oncofed.errors import OncofedError, QueryError

SLUG = r"^[a-z0-9][a-z0-9._-]{0,63}$"
Subgroup = Literal["site", "collection", "manufacturer", "model", "age_band", "sex", "modality"]
SUBGROUPS: tuple[str, ...] = get_args(Subgroup)


METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece"),
    "ordinal": ("quadratic_kappa", "accuracy", "confusion_matrix"),
    "multiclass": ("accuracy", "confusion_matrix"),
}
"""Metrics each task can report (computed by ``oncofed.tef.metrics``)."""


class SpecError(OncofedError):
    """A benchmark specification is unreadable or invalid."""

    code = "invalid_benchmark"


class Task(StrEnum):
    """What the algorithm predicts."""

    BINARY = "binary"
    ORDINAL = "ordinal"
    MULTICLASS = "multiclass"


class StrictModel(BaseModel):
    """A frozen model that refuses unknown fields (specs and manifests)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validation_problems(exc: ValidationError) -> str:
    """Every problem of a validation error as ``field.path: message``, joined."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors()
    )


class CaseSelection(StrictModel):
    """Which pixels of a case the benchmark feeds the algorithm (the algorithm's manifest says
    how they are resized and normalised)."""

    image: Literal["middle", "first"] = "middle"
    """For a DICOM series: its middle or first image (frame)."""
    max_tiles: int = Field(default=32, ge=1, le=4096)
    """For a slide: at most this many tissue tiles (the most tissue first)."""
    min_tissue: float = Field(default=0.5, ge=0.0, le=1.0)
    """For a slide: the tissue share a tile needs."""


class InputSpec(StrictModel):
    """The cases' image data."""

    modality: str = Field(pattern=r"^[A-Z]{2,4}$")
    kind: Literal["dicom-image", "wsi"]
    preprocessing: CaseSelection = CaseSelection()


class BenchmarkSpec(StrictModel):
    """One benchmark: task, cases, reference standard and scoring."""

    id: str = Field(pattern=SLUG)
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")
    title: str = ""
    description: str = ""
    task: Task
    classes: tuple[str, ...] = Field(min_length=2, max_length=64)
    """Label values in order; for a binary task the second is the positive class."""
    input: InputSpec
    cohort: dict[str, Any] = Field(default_factory=dict)
    """Cases at each node, in the cohort filter language (e.g. ``{"modality": ["MR"]}``)."""
    label_kind: str
    metrics: tuple[str, ...] = Field(min_length=1)
    primary_metric: str
    ci_method: Literal["delong", "bootstrap"] = "bootstrap"
    """DeLong applies to AUROC of binary tasks; other metrics use the bootstrap."""
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_bootstrap: int = Field(default=2000, ge=100, le=100_000)
    subgroups: tuple[Subgroup, ...] = ("site",)
    operating_points: tuple[float, ...] = (0.5,)
    """Score thresholds at which binary sensitivity, specificity, PPV and NPV are reported."""
    synthetic: bool = False
    """The benchmark's cases are generated, not patients: its reports carry a banner."""

    @field_validator("cohort")
    @classmethod
    def _cohort_parses(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_filter(value)
        except QueryError as exc:
            raise ValueError(exc.message) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for value in self.classes:
            normalise_label(self.label_kind, value)  # ValueError names the bad class
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes repeat a value: {list(self.classes)}")
        if self.task is Task.BINARY and len(self.classes) != 2:
            raise ValueError(f"a binary task has 2 classes, got {len(self.classes)}")
        known = METRICS[self.task]
        unknown = [m for m in self.metrics if m not in known]
        if unknown:
            raise ValueError(
                f"metrics {unknown} do not apply to a {self.task.value} task;"
                f" choose from {', '.join(known)}"
            )
        if self.primary_metric not in self.metrics:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among metrics {list(self.metrics)}"
            )
        if any(not 0.0 <= t <= 1.0 for t in self.operating_points):
            raise ValueError(f"operating_points are thresholds in [0, 1]: {self.operating_points}")
        if self.ci_method == "delong" and self.task is not Task.BINARY:
            raise ValueError("ci_method delong applies to binary tasks; use bootstrap")
        if self.input.kind == "wsi" and self.input.modality != "SM":
            raise ValueError(f"wsi input has modality SM, got {self.input.modality!r}")
        return self

    @property
    def key(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    def canonical_json(self) -> str:
        """The spec as sorted, compact JSON (what :attr:`sha256` hashes)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        """SHA-256 of the canonical JSON: two specs with equal content share it."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def parse_spec(data: Any, *, source: str = "benchmark spec") -> BenchmarkSpec:
    """Validate a parsed document; every problem named with its field path."""
    try:
        return BenchmarkSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {validation_problems(exc)}") from exc


def load_spec(path: Path | str) -> BenchmarkSpec:
    """Read a spec from a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise SpecError(f"{path}: use a .yaml, .yml, .json or .toml file, not {suffix!r}")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read benchmark spec {path}: {exc}") from exc
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: not valid {suffix.lstrip('.').upper()}: {exc}") from exc
    return parse_spec(data, source=str(path))
