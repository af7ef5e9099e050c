"""Labelled ultrasound images as a torch dataset, from a folder plus label CSV or a node."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import torch
from torch import Tensor
from torch.utils.data import Dataset

from oncofed.catalog.labels import read_label_csv
from oncofed.errors import OncofedError
from oncofed.models.breast_us.preprocess import INPUT_SIZE, load_input
from oncofed.models.cli_support import LabelledFile, node_cases
from oncofed.node import Node

LABEL_KIND = "malignant"
CLASSES = ("0", "1")
GAIN_JITTER = 0.1
"""Training augmentation: grey levels scaled by 1 +- this (a scanner's gain setting)."""


class UltrasoundDataset(Dataset[tuple[Tensor, Tensor]]):
    """Preprocessed images held in memory; ``augment`` adds left-right flips and gain jitter
    drawn from torch's global generator (seeded and checkpointed by ``fit``)."""

    def __init__(
        self, files: Sequence[LabelledFile], *, size: int = INPUT_SIZE, augment: bool = False
    ) -> None:
        if not files:
            raise OncofedError("no images to build an ultrasound dataset from")
        self.inputs = torch.from_numpy(np.stack([load_input(f.path, size=size) for f in files]))
        self.targets = torch.tensor([float(f.target) for f in files])
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.inputs[index]
        if self.augment:
            if bool(torch.rand(()) < 0.5):
                image = image.flip(-1)
            gain = 1 + GAIN_JITTER * (2 * torch.rand(()) - 1)
            image = (image * gain).clamp(0, 1)
        return image, self.targets[index]


def files_from_folder(images: Path, labels_csv: Path) -> list[LabelledFile]:
    """DICOM files under ``images`` whose Patient ID has a ``malignant`` row in the label CSV
    (``Node.import_labels`` format); files without a label are left out."""
    rows = read_label_csv(labels_csv)
    values = {row.patient_id: row.value for row in rows if row.kind == LABEL_KIND}
    if not values:
        raise OncofedError(f"{labels_csv}: no rows of kind {LABEL_KIND!r}")
    if not images.is_dir():
        raise OncofedError(f"{images}: not a folder")
    files = []
    for path in sorted(p for p in images.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
        patient = str(ds.get("PatientID", ""))
        if patient in values and str(ds.get("Modality", "")) == "US":
            site = str(ds.get("InstitutionName", "") or ds.get("Manufacturer", "") or "unknown")
            files.append(LabelledFile(path, int(values[patient]), patient, site))
    if not files:
        raise OncofedError(f"{images}: no US DICOM files whose Patient ID is in {labels_csv}")
    return files


def files_from_node(node: Node, cohort: dict[str, object]) -> list[LabelledFile]:
    """The cohort's US series at ``node`` with a ``malignant`` label, as stored files."""
    return node_cases(
        node,
        dict(cohort),
        modality="US",
        input_kind="dicom-image",
        label_kind=LABEL_KIND,
        classes=CLASSES,
    )
