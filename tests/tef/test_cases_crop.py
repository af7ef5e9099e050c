"""The manifest's ultrasound crop: the node feeds the algorithm the imaging region named by the
Sequence of Ultrasound Regions, not the text and scales around it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from skimage.transform import resize
from tef_support import python_package

from oncofed.node import Node
from oncofed.tef.algorithm import load_package
from oncofed.tef.cases import case_pixels, resolve_cases
from oncofed.tef.spec import parse_spec
from oncofed.testing.breast_us import generate_breast_us

SPEC = parse_spec({
    "id": "breast-us", "version": "1", "task": "binary", "classes": ["0", "1"],
    "input": {"modality": "US", "kind": "dicom-image"}, "cohort": {"collection": ["us"]},
    "label_kind": "malignant", "metrics": ["auroc"], "primary_metric": "auroc",
})  # fmt: skip


def test_ultrasound_region_crop_feeds_only_the_imaging_region(tmp_path: Path) -> None:
    generated = generate_breast_us(tmp_path / "us", cases=3, seed=4)
    manifest = load_package(python_package(tmp_path / "algo", "def predict(x):\n    return x\n"))
    cropping = manifest.manifest.model_copy(update={
        "preprocessing": manifest.manifest.preprocessing.model_copy(
            update={"crop": "ultrasound-region"})})  # fmt: skip
    with Node.init(tmp_path / "node", name="node") as node:
        node.ingest([generated.dicom_dir], "us", workers=1, show_progress=False)
        node.import_labels(generated.labels_csv, "us")
        cases = resolve_cases(node, SPEC).cases
        assert len(cases) == 3
        for case in cases:
            stored = node.catalog.con.execute(
                "SELECT sha256 FROM instance WHERE series_key = ?", [case.series_key]
            ).fetchone()[0]
            pixels = np.asarray(pydicom.dcmread(node.store.path_for(stored)).pixel_array, float)
            x0, y0, x1, y1 = generated.images[0].region  # one scanner: one region for all
            region = (pixels[..., None] if pixels.ndim == 2 else pixels)[y0 : y1 + 1, x0 : x1 + 1]
            region = (region - region.min()) / (region.max() - region.min())
            size = (*manifest.manifest.input.size, region.shape[2])
            expected = resize(region, size, order=1, anti_aliasing=True, preserve_range=True)
            expected = expected.mean(axis=2)
            fed = case_pixels(node, SPEC, cropping, case)[0, 0]
            assert fed == pytest.approx(expected, abs=1e-5)
            whole = case_pixels(node, SPEC, manifest.manifest, case)[0, 0]
            assert np.abs(whole - fed).max() > 0.1  # uncropped: header and scale included
