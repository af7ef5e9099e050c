"""Benchmark specs: the same spec from YAML, JSON and TOML; every problem named by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import yaml

from oncofed.tef.spec import SpecError, Task, load_spec, parse_spec

SPEC: dict[str, Any] = {
    "id": "breast-us-malignancy",
    "version": "1.0",
    "title": "Breast ultrasound: malignant or benign",
    "task": "binary",
    "classes": ["0", "1"],
    "input": {"modality": "US", "kind": "dicom-image", "preprocessing": {"image": "middle"}},
    "cohort": {"body_part": ["BREAST"], "age": [18, None]},
    "label_kind": "malignant",
    "metrics": ["auroc", "sensitivity", "specificity"],
    "primary_metric": "auroc",
    "ci_method": "delong",
    "subgroups": ["site", "manufacturer", "age_band"],
    "operating_points": [0.5, 0.3],
}


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_same_spec_from_each_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    if suffix == ".yaml":
        path.write_text(yaml.safe_dump(SPEC))
    elif suffix == ".json":
        path.write_text(json.dumps(SPEC))
    else:
        path.write_text(tomli_w.dumps({**SPEC, "cohort": {"body_part": ["BREAST"]}}))
    spec = load_spec(path)
    assert (spec.key, spec.task, spec.classes) == ("breast-us-malignancy@1.0", Task.BINARY,
                                                   ("0", "1"))  # fmt: skip
    assert spec.subgroups == ("site", "manufacturer", "age_band")


def test_hash_follows_content_not_formatting() -> None:
    spec = parse_spec(SPEC)
    assert parse_spec(json.loads(json.dumps(SPEC))).sha256 == spec.sha256
    assert parse_spec({**SPEC, "version": "1.1"}).sha256 != spec.sha256
    assert len(spec.sha256) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "regression"}, "task: Input should be 'binary', 'ordinal' or 'multiclass'"),
        ({"classes": ["0", "1", "1"]}, "classes repeat a value"),
        ({"label_kind": "birads", "classes": ["0", "1", "2"]}, "a binary task has 2 classes"),
        ({"classes": ["0", "yes"]}, "malignant value 'yes' must be 0 or 1"),
        ({"label_kind": "tumour_size"}, "unknown kind 'tumour_size'"),
        ({"cohort": {"scanner": ["X"]}}, "cohort: Value error, unknown field 'scanner'"),
        ({"metrics": ["auroc", "quadratic_kappa"]}, r"\['quadratic_kappa'\] do not apply"),
        ({"primary_metric": "brier"}, "primary_metric 'brier' is not among metrics"),
        ({"subgroups": ["hospital"]}, "subgroups.0: Input should be 'site'"),
        ({"operating_points": [1.5]}, r"thresholds in \[0, 1\]"),
        ({"input": {"modality": "US", "kind": "wsi"}}, "wsi input has modality SM"),
        ({"id": "Breast US"}, "id: String should match pattern"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_invalid_specs_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({**SPEC, **change})


def test_ordinal_spec_and_delong_only_for_binary() -> None:
    ordinal = {**SPEC, "task": "ordinal", "classes": [str(g) for g in range(6)],
               "label_kind": "isup_grade", "metrics": ["quadratic_kappa", "accuracy"],
               "primary_metric": "quadratic_kappa", "ci_method": "bootstrap"}  # fmt: skip
    assert len(parse_spec(ordinal).classes) == 6
    with pytest.raises(SpecError, match="ci_method delong applies to binary tasks"):
        parse_spec({**ordinal, "ci_method": "delong"})


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("id: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "spec.yaml")
    (tmp_path / "spec.txt").write_text("{}")
    with pytest.raises(SpecError, match=r"use a \.yaml, \.yml, \.json or \.toml file"):
        load_spec(tmp_path / "spec.txt")
    with pytest.raises(SpecError, match="cannot read benchmark spec"):
        load_spec(tmp_path / "missing.json")
