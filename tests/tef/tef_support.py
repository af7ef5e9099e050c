"""TEF test helpers: algorithm packages (Python entry points, ONNX from scikit-learn), images."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)
from skimage.transform import resize
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from oncofed.tef.sandbox import Limits

SIZE = 16
LESION_BENCHMARK: dict[str, Any] = {
    "id": "breast-mg-lesion",
    "version": "1.0",
    "task": "binary",
    "classes": ["0", "1"],
    "input": {"modality": "MG", "kind": "dicom-image"},
    "cohort": {"collection": ["breast-mg"]},
    "label_kind": "malignant",
    "metrics": ["auroc", "sensitivity", "specificity"],
    "primary_metric": "auroc",
}
"""A binary benchmark over the lesion patches of :func:`write_lesion_cohort` (collection
``breast-mg``, labels of kind ``malignant``)."""
FAST = Limits(memory_mb=512, cpu_seconds=20, wall_seconds=30, log_bytes=64 * 1024)


def lesion_images(labels: NDArray[np.int64], seed: int, size: int = SIZE) -> NDArray[np.float32]:
    """Images in [0, 1]: noise, plus a bright disc (radius size/5) near the centre where the
    label is 1 (lesion-centred crops, as a detector would hand to a classifier)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.08, size=(len(labels), size, size))
    yy, xx = np.mgrid[:size, :size]
    radius = size / 5
    for i, label in enumerate(labels):
        if label:
            cy, cx = size / 2 + rng.uniform(-radius / 2, radius / 2, size=2)
            images[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] += 0.5
    return np.clip(images, 0, 1).astype(np.float32)


def write_lesion_cohort(out: Path, labels: list[int], seed: int) -> list[dict[str, str]]:
    """One 32x32 mammography patch per fake patient (values 0-1000: the image x 1000);
    returns label CSV rows keyed by the original Patient IDs."""
    images = lesion_images(np.array(labels), seed, size=2 * SIZE)
    rows = []
    for number, (label, image) in enumerate(zip(labels, images, strict=True), start=1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = (
            DigitalMammographyXRayImageStorageForPresentation
        )
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=["oncofed-tef-test", str(seed), str(number), "sop"])  # fmt: skip
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(seed), str(number), "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(seed), str(number), "series"])
        ds.PatientID = f"FAKE-TEF-{number:04d}"
        ds.PatientName = f"FAKE^TEF{number:04d}"
        ds.PatientSex = "F"
        ds.PatientAge = f"{40 + number % 30:03d}Y"
        ds.StudyDate = "20710101"
        ds.Modality = "MG"
        ds.BurnedInAnnotation = "NO"
        ds.BodyPartExamined = "BREAST"
        ds.Manufacturer = ("SynthVendor Medical", "Phantomray Imaging")[number % 2]
        ds.InstanceNumber = 1
        ds.Rows = ds.Columns = 2 * SIZE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.rint(image * 1000).astype(np.uint16).tobytes()
        path = out / f"{ds.PatientID}.dcm"
        out.mkdir(parents=True, exist_ok=True)
        dcmwrite(path, ds, enforce_file_format=True)
        rows.append({"patient_id": ds.PatientID, "kind": "malignant", "value": str(label)})
    return rows


def write_manifest(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.toml").write_text(textwrap.dedent(body), encoding="utf-8")
    return root


def python_package(root: Path, code: str, *, meaning: str = "probability", classes: int = 2,
                   kind: str = "dicom-image", channels: int = 1) -> Path:  # fmt: skip
    """A Python entry-point package whose ``algo.predict`` is ``code``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "algo.py").write_text(textwrap.dedent(code), encoding="utf-8")
    mpp = "mpp = 2.0\n" if kind == "wsi" else ""
    return write_manifest(
        root,
        f"""\
        [algorithm]
        name = "{root.name.lower()}"
        version = "0.1"
        kind = "python"
        entry_point = "algo:predict"

        [input]
        kind = "{kind}"
        shape = [-1, {channels}, {SIZE}, {SIZE}]

        [preprocessing]
        {mpp}
        [output]
        meaning = "{meaning}"
        classes = {classes}
        """,
    )


def lesion_onnx_package(root: Path, *, output: str = "probabilities") -> Path:
    """Logistic regression on the 256 pixels, exported by skl2onnx, fed NCHW images."""
    labels = np.array([0, 1] * 100)
    images = np.stack([resize(i, (SIZE, SIZE), order=1, anti_aliasing=True)
                       for i in lesion_images(labels, seed=1, size=2 * SIZE)])  # fmt: skip
    model = LogisticRegression(max_iter=500).fit(images.reshape(len(labels), -1), labels)
    graph = to_onnx(
        model, images.reshape(len(labels), -1)[:1], options={"zipmap": False}, target_opset=17
    )
    flat = graph.graph.input[0].name
    graph.graph.node.insert(0, helper.make_node("Flatten", ["image"], [flat], axis=1))
    del graph.graph.input[:]
    graph.graph.input.append(
        helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [None, 1, SIZE, SIZE])
    )
    onnx.checker.check_model(graph)
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, root / "model.onnx")
    return write_manifest(
        root,
        f"""\
        [algorithm]
        name = "lesion-lr"
        version = "1.0"
        kind = "onnx"
        model = "model.onnx"

        [input]
        kind = "dicom-image"
        name = "image"
        shape = [-1, 1, {SIZE}, {SIZE}]

        [preprocessing]
        window = [500, 1000]

        [output]
        name = "{output}"
        meaning = "class_probabilities"
        classes = 2
        """,
    )
