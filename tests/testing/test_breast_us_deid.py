"""De-identifying synthetic breast ultrasound: fake text gone, lesion and speckle kept."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from oncofed.config import RESEARCH_DEID_OPTIONS
from oncofed.deid.pixels import text_mask
from oncofed.deid.stage import make_stage
from oncofed.testing.breast_us import SCANNERS, BreastUSImage, generate_breast_us

KEY = b"u" * 32


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[BreastUSImage]:
    root = tmp_path_factory.mktemp("us-deid")
    return generate_breast_us(root, cases=6, seed=11, sites=tuple(SCANNERS)).images


def grey(ds: Dataset) -> np.ndarray:
    pixels = ds.pixel_array
    return pixels.max(axis=2) if pixels.ndim == 3 else pixels


def deidentify(raw: bytes) -> tuple[bytes, Dataset, float]:
    outcome = make_stage(KEY, RESEARCH_DEID_OPTIONS).process(raw, "synthetic-us")
    return outcome.data, pydicom.dcmread(BytesIO(outcome.data)), outcome.pixels_masked


def check_clean(image: BreastUSImage, data: bytes, after: Dataset) -> None:
    before = grey(pydicom.dcmread(image.path))
    cleaned = grey(after)
    original = pydicom.dcmread(image.path, stop_before_pixels=True)
    planted = (original.PatientName, original.PatientID, original.AccessionNumber,
               original.StudyDate, original.PatientBirthDate)  # fmt: skip
    for value in planted:
        assert str(value).encode() not in data
    for x0, y0, x1, y1 in image.text_boxes:
        assert (before[y0:y1, x0:x1] == 255).any()
        assert not (cleaned[y0:y1, x0:x1] == 255).any(), f"{image.site}: burned-in text remains"
    assert np.mean(cleaned[image.lesion] == before[image.lesion]) == 1.0
    x0, y0, x1, y1 = image.region
    kept = cleaned[y0 : y1 + 1, x0 : x1 + 1] == before[y0 : y1 + 1, x0 : x1 + 1]
    assert kept.mean() > 0.99, f"{image.site}: only {kept.mean():.3f} of the image region kept"


def test_region_sequence_masks_the_header_and_keeps_the_image(images: list[BreastUSImage]) -> None:
    for image in images:
        data, after, masked = deidentify(image.path.read_bytes())
        check_clean(image, data, after)
        x0, y0, x1, y1 = image.region
        outside = 1 - (x1 - x0 + 1) * (y1 - y0 + 1) / (after.Rows * after.Columns)
        assert masked == pytest.approx(outside, abs=0.01)
        assert after.BurnedInAnnotation == "NO"
        assert "SequenceOfUltrasoundRegions" in after


def test_without_a_region_sequence_the_text_detector_finds_the_text(
    images: list[BreastUSImage],
) -> None:
    for image in images:
        ds = pydicom.dcmread(image.path)
        del ds.SequenceOfUltrasoundRegions
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data, after, masked = deidentify(buffer.getvalue())
        check_clean(image, data, after)
        assert masked < 0.2  # text and scale only, not the speckle


def test_speckle_is_not_taken_for_text(images: list[BreastUSImage]) -> None:
    for image in images:
        pixels = grey(pydicom.dcmread(image.path)).astype(np.float32)
        x0, y0, x1, y1 = image.region
        speckle_only = pixels[y0 : y1 + 1, x0 : x1 + 1]
        assert text_mask(speckle_only).mean() < 0.005
