"""Synthetic breast ultrasound: seeded files, labels a node imports, per-site scanners, speckle."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import stats

from oncofed.node import Node
from oncofed.testing.breast_us import SCANNERS, generate_breast_us, speckle


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    one = generate_breast_us(tmp_path / "one", cases=4, seed=3, sites=("SITE-A", "SITE-C"))
    two = generate_breast_us(tmp_path / "two", cases=4, seed=3, sites=("SITE-A", "SITE-C"))
    other = generate_breast_us(tmp_path / "other", cases=4, seed=4, sites=("SITE-A", "SITE-C"))
    for a, b, c in zip(one.images, two.images, other.images, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
        assert a.path.read_bytes() != c.path.read_bytes()
    assert one.labels_csv.read_bytes() == two.labels_csv.read_bytes()


def test_labels_are_balanced_and_birads_follows_the_features(tmp_path: Path) -> None:
    manifest = generate_breast_us(tmp_path, cases=60, seed=0)
    malignant = np.array([i.malignant for i in manifest.images])
    birads = np.array([i.birads for i in manifest.images])
    assert malignant.sum() == 30
    assert birads[malignant == 1].mean() > birads[malignant == 0].mean() + 1
    assert {2, 3, 4, 5} <= set(birads.tolist())
    # the classes overlap: some benign lesions look suspicious, some cancers do not
    assert (birads[malignant == 0] >= 4).any() and (birads[malignant == 1] <= 4).any()


def test_sites_differ_like_scanners_do(tmp_path: Path) -> None:
    manifest = generate_breast_us(tmp_path, cases=2, seed=0, sites=tuple(SCANNERS))
    seen = {}
    for image in manifest.images[::2]:
        ds = pydicom.dcmread(image.path)
        scanner = SCANNERS[image.site]
        region = ds.SequenceOfUltrasoundRegions[0]
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
        assert ds.Modality == "US" and ds.Manufacturer == scanner.manufacturer
        assert ds.ManufacturerModelName == scanner.model
        assert ds.SamplesPerPixel == scanner.samples
        assert float(region.PhysicalDeltaY) == pytest.approx(scanner.pixel_mm / 10)
        x0, y0, x1, y1 = image.region
        assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (x0, y0)
        assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (x1, y1)
        assert (y1 - y0 + 1) * scanner.pixel_mm == pytest.approx(scanner.depth_mm, abs=0.5)
        seen[image.site] = (ds.Rows, ds.Columns)
    assert len(set(seen.values())) == len(SCANNERS)


def test_burned_in_text_lies_in_the_header_band_outside_the_region(tmp_path: Path) -> None:
    image = generate_breast_us(tmp_path, cases=1, seed=0).images[0]
    pixels = pydicom.dcmread(image.path).pixel_array
    x0, y0, x1, y1 = image.region
    assert image.patient_name.startswith("FAKE^") and image.patient_id.startswith("FAKE-")
    for bx0, by0, bx1, by1 in image.text_boxes:
        assert by1 <= y0
        assert (pixels[by0:by1, bx0:bx1] == 255).sum() > 20
    assert not image.lesion[:y0].any() and image.lesion[y0 : y1 + 1, x0 : x1 + 1].any()


def test_speckle_is_rayleigh_and_lesions_are_darker(tmp_path: Path) -> None:
    envelope = speckle(np.random.default_rng(0), (256, 256), (1.0, 1.6))
    sample = envelope[::4, ::4].ravel()  # roughly independent samples
    scale = np.sqrt(np.mean(sample**2) / 2)
    assert stats.kstest(sample, "rayleigh", args=(0, scale)).pvalue > 0.01
    darker = []
    for image in generate_breast_us(tmp_path, cases=8, seed=0).images:
        pixels = pydicom.dcmread(image.path).pixel_array
        x0, y0, x1, y1 = image.region
        darker.append(pixels[image.lesion].mean() < pixels[y0 : y1 + 1, x0 : x1 + 1].mean())
    assert np.mean(darker) >= 0.75


def test_label_csv_imports_into_a_node(tmp_path: Path) -> None:
    manifest = generate_breast_us(tmp_path / "us", cases=6, seed=0, sites=("SITE-B",))
    with manifest.labels_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["kind"] for r in rows} == {"malignant", "birads"}
    with Node.init(tmp_path / "node", name="hospital-b") as node:
        report = node.ingest([manifest.dicom_dir], "breast-us", workers=1, show_progress=False)
        assert report.added == 6
        result = node.import_labels(manifest.labels_csv, "breast-us", strict=True)
        assert result.added == 12 and not result.unmatched
