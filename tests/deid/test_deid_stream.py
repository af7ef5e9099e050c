"""De-identifying straight from the bytes gives exactly what the pydicom path gives.

Every input is de-identified both ways: where the byte walk takes it, the output bytes, the
actions and the catalog record must equal the pydicom path's, and it must never take an input
the pydicom path refuses. Inputs: generated cohorts (CT, MR, MG, US, large Enhanced CT), the
de-identification corpus (planted identifiers, nested sequences, character sets, private
blocks, several transfer syntaxes), the bad inputs and pydicom's own test files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from oncofed.catalog.records import InstanceRecord
from oncofed.deid.corpus import generate_corpus, write_bad_inputs
from oncofed.deid.encode import file_meta, meta_bytes, part10_head
from oncofed.deid.stage import DeidStage, make_stage
from oncofed.errors import IngestError
from oncofed.ingest.parse import record_of
from oncofed.storage.blobstore import sha256_hex
from oncofed.testing.dicom import generate_cohort, generate_large

OPTIONS = (
    (),
    ("retain-modified-dates",),
    ("clean-descriptors", "clean-structured-content", "retain-patient-characteristics"),
    ("retain-full-dates", "retain-uids"),
)
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
"""pydicom's own test files (those shipped in the package; others it would download)."""
MAX_BYTES = 2 << 20


def _inputs(root: Path) -> dict[str, list[Path]]:
    found = {
        "cohort": generate_cohort(root / "cohort", patients=4, seed=5).files,
        "large": generate_large(root / "large", 1, frames=3, seed=2),
        "corpus": [p.path for p in generate_corpus(root / "corpus", patients=3, seed=4).files],
        "pydicom": [],
    }
    write_bad_inputs(root / "bad")
    found["bad"] = sorted(p for p in (root / "bad").rglob("*") if p.is_file())
    found["pydicom"] = sorted(
        p for p in PYDICOM_FILES.rglob("*") if p.is_file() and p.stat().st_size < MAX_BYTES
    )
    return found


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return _inputs(tmp_path_factory.mktemp("stream"))


def _both(stage: DeidStage, raw: bytes) -> tuple[object, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = stage.from_bytes(raw)
        try:
            reference: object = stage.through_pydicom(raw)
        except Exception as exc:  # refused: the byte walk must refuse it too
            reference = exc
    return fast, reference


def _record(header: Dataset, digest: str, size: int) -> InstanceRecord | str:
    """The catalog record, or why there is none (a header-only object, say)."""
    try:
        return record_of(header, digest, size)
    except IngestError as exc:
        return exc.message


@pytest.mark.parametrize("options", OPTIONS)
def test_byte_walk_equals_the_pydicom_path(
    inputs: dict[str, list[Path]], options: tuple[str, ...]
) -> None:
    stage = make_stage(b"stream-test-key!" * 2, options)
    taken: dict[str, int] = {}
    for kind, paths in inputs.items():
        for path in paths:
            fast, reference = _both(stage, path.read_bytes())
            if fast is None:
                continue
            assert isinstance(reference, tuple), f"{path}: taken here, refused by pydicom"
            (ours, our_header), (theirs, their_ds) = fast, reference
            assert ours.data == theirs.data, path  # type: ignore[attr-defined]
            assert ours.actions == theirs.actions, path  # type: ignore[attr-defined]
            assert ours.pseudonym == theirs.pseudonym  # type: ignore[attr-defined]
            assert ours.sop_instance_uid == theirs.sop_instance_uid  # type: ignore[attr-defined]
            digest, size = sha256_hex(ours.data), len(ours.data)  # type: ignore[attr-defined]
            assert _record(our_header, digest, size) == _record(their_ds, digest, size), path
            taken[kind] = taken.get(kind, 0) + 1
    # the common case is taken: everything generated but ultrasound (burned-in text) ...
    cohort = [p for p in inputs["cohort"] if dcmread(p, stop_before_pixels=True).Modality != "US"]
    assert taken["cohort"] >= len(cohort) > 20
    assert taken["large"] == len(inputs["large"])
    assert taken.get("corpus", 0) >= 8 and taken.get("pydicom", 0) >= 50  # ... and more


def test_written_file_meta_equals_pydicom_s() -> None:
    for sop_class, uid, syntax in (
        ("1.2.840.10008.5.1.4.1.1.2", "2.25.1234", "1.2.840.10008.1.2.1"),
        ("1.2.840.10008.5.1.4.1.1.4", "2.25.12345", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.77.1.6", "2.25.9", "1.2.840.10008.1.2.4.50"),
    ):
        expected = meta_bytes(file_meta(sop_class, uid, syntax))
        assert part10_head(sop_class, uid, syntax) == expected
