"""A received instance is catalogued from the data set de-identification produced, without
parsing its bytes again: the record must equal the one parsed from those bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncofed.config import RESEARCH_DEID_OPTIONS
from oncofed.deid.stage import make_stage
from oncofed.errors import IngestError
from oncofed.ingest.parse import parse_instance, record_of
from oncofed.storage.blobstore import sha256_hex
from oncofed.testing.dicom import generate_cohort


def test_the_record_of_the_data_set_equals_the_parsed_one(tmp_path: Path) -> None:
    cohort = generate_cohort(tmp_path / "in", patients=3, seed=57)
    stage = make_stage(b"k" * 32, RESEARCH_DEID_OPTIONS)
    for path in cohort.files:
        data, dataset = stage.clean(path.read_bytes(), str(path))
        digest = sha256_hex(data)
        assert record_of(dataset, digest, len(data)) == parse_instance(data, digest)


def test_the_record_of_an_image_without_pixel_data_is_refused(tmp_path: Path) -> None:
    cohort = generate_cohort(tmp_path / "in", patients=1, seed=58)
    stage = make_stage(b"k" * 32, RESEARCH_DEID_OPTIONS)
    data, dataset = stage.clean(cohort.files[0].read_bytes(), "x")
    del dataset.PixelData
    with pytest.raises(IngestError, match="without pixel data"):
        record_of(dataset, sha256_hex(data), len(data))
