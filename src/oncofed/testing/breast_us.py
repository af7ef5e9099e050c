"""Seeded synthetic breast ultrasound (US Image Storage) with learnable lesion signal.

Each image is B-mode breast tissue (skin, subcutaneous fat with Cooper's ligaments,
fibroglandular tissue, retromammary fat, pectoral muscle) whose echo amplitude is multiplied by
fully developed speckle (the magnitude of a smoothed complex Gaussian field, so Rayleigh
distributed) and log-compressed for display. One lesion per image follows the BI-RADS lexicon:
malignant lesions tend to be irregular, not parallel (taller than wide), with angular or
spiculated margins, hypoechoic and heterogeneous, casting a posterior shadow; benign ones tend to
be oval, parallel, circumscribed, anechoic (cysts) or evenly hypoechoic, with posterior
enhancement. Every feature is drawn with a label-dependent probability, so the classes overlap.

Sites differ as scanners do (manufacturer, model, gain, dynamic range, speckle size, pixel
spacing, depth, colour or grey). A header band outside the imaging region carries burned-in text
with the image's obviously fake patient name, ID and date, as real scanners print them; the
imaging region is described by the Sequence of Ultrasound Regions.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid
from scipy.ndimage import gaussian_filter

from oncofed.testing.sites import seeded_sites

__all__ = [
    "SCANNERS",
    "BreastUSImage",
    "BreastUSManifest",
    "Scanner",
    "generate_breast_us",
    "speckle",
]

HEADER_ROWS = 24
"""Rows of the annotation band above the imaging region."""
SIDE_COLUMNS = 30
"""Columns right of the imaging region holding the depth scale."""
MARGIN = 6
_UID_ROOT = "oncofed-breast-us"
_STUDY_START = dt.date(2071, 1, 1)


@dataclass(frozen=True)
class Scanner:
    """One site's ultrasound system and its settings."""

    site: str
    manufacturer: str
    model: str
    institution: str
    pixel_mm: float
    depth_mm: float
    width_mm: float
    gain_db: float
    dynamic_range_db: float
    speckle_px: tuple[float, float]
    """Speckle correlation length (axial, lateral) in pixels: the system's resolution."""
    samples: int
    """1 (MONOCHROME2) or 3 (RGB, coloured annotations)."""


SCANNERS: dict[str, Scanner] = {
    s.site: s
    for s in (
        Scanner("SITE-A", "SynthVendor Medical", "SynthVendor Echo U9", "SYNTH SITE A",
                0.30, 36.0, 42.0, 0.0, 50.0, (1.0, 1.6), 1),
        Scanner("SITE-B", "Phantomray Imaging", "Phantomray Sono 7", "SYNTH SITE B",
                0.36, 42.0, 46.0, 5.0, 40.0, (1.5, 2.4), 1),
        Scanner("SITE-C", "Mockwave Systems", "Mockwave Vivid X", "SYNTH SITE C",
                0.26, 30.0, 38.0, -4.0, 60.0, (0.8, 1.1), 3),
    )
}  # fmt: skip
"""The synthetic sites and their scanners."""


@dataclass(frozen=True)
class BreastUSImage:
    """One generated image, with the truth a test needs."""

    path: Path
    patient_id: str
    patient_name: str
    site: str
    malignant: int
    birads: int
    region: tuple[int, int, int, int]
    """Imaging region (x0, y0, x1, y1), inclusive, as in the Sequence of Ultrasound Regions."""
    lesion: NDArray[np.bool_]
    """Lesion pixels, full-image coordinates."""
    text_boxes: tuple[tuple[int, int, int, int], ...]
    """Boxes (x0, y0, x1, y1), exclusive ends, holding burned-in text."""
    burned_text: tuple[str, ...]
    """The identifying strings written into the pixels."""


@dataclass(frozen=True)
class BreastUSManifest:
    """What ``generate_breast_us`` wrote."""

    images: list[BreastUSImage]
    dicom_dir: Path
    """The images, ``<site>/<patient id>.dcm`` below it."""
    labels_csv: Path
    """``patient_id,kind,value`` rows (malignant, birads) in ``Node.import_labels`` form."""


@dataclass(frozen=True)
class _Lesion:
    malignant: bool
    irregular: bool
    parallel: bool
    margin: str  # circumscribed | indistinct | angular | spiculated
    echo: str  # anechoic | hypoechoic | heterogeneous | isoechoic
    posterior: str  # enhancement | none | shadowing

    @property
    def birads(self) -> int:
        """Assessment a reader would give from the features alone."""
        if self.echo == "anechoic" and self.margin == "circumscribed" and not self.irregular:
            return 2
        suspicious = sum(
            (
                self.irregular,
                not self.parallel,
                self.margin != "circumscribed",
                self.margin == "spiculated",
                self.echo == "heterogeneous",
                self.posterior == "shadowing",
            )
        )
        return 3 if suspicious == 0 else 4 if suspicious <= 2 else 5


def generate_breast_us(
    out_dir: Path,
    *,
    cases: int = 40,
    seed: int = 0,
    sites: Sequence[str] = ("SITE-A",),
    malignant_fraction: float = 0.5,
) -> BreastUSManifest:
    """Write ``cases`` images per site under ``out_dir/dicom/<site>/`` and ``out_dir/labels.csv``.

    Labels alternate so each site holds ``round(cases * malignant_fraction)`` malignant cases;
    the same seed writes byte-identical files.
    """
    images: list[BreastUSImage] = []
    for site, rng in seeded_sites(sites, SCANNERS, seed):
        scanner = SCANNERS[site]
        positives = round(cases * malignant_fraction)
        labels = rng.permutation([1] * positives + [0] * (cases - positives))
        for number, label in enumerate(labels, start=1):
            images.append(_write_case(out_dir / "dicom", scanner, number, bool(label), rng, seed))
    labels_csv = out_dir / "labels.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with labels_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "kind", "value"])
        for image in images:
            writer.writerow([image.patient_id, "malignant", image.malignant])
            writer.writerow([image.patient_id, "birads", image.birads])
    return BreastUSManifest(images, out_dir / "dicom", labels_csv)


def _draw_lesion(rng: np.random.Generator, malignant: bool) -> _Lesion:
    def pick(options: tuple[str, ...], weights: tuple[float, ...]) -> str:
        return str(rng.choice(options, p=np.array(weights) / sum(weights)))

    if malignant:
        echo = pick(("heterogeneous", "hypoechoic", "isoechoic"), (0.7, 0.25, 0.05))
        return _Lesion(
            malignant=True,
            irregular=bool(rng.random() < 0.75),
            parallel=bool(rng.random() < 0.4),
            margin=pick(
                ("spiculated", "angular", "indistinct", "circumscribed"), (0.4, 0.2, 0.2, 0.2)
            ),
            echo=echo,
            posterior=pick(("shadowing", "none", "enhancement"), (0.55, 0.35, 0.1)),
        )
    echo = pick(("anechoic", "hypoechoic", "isoechoic", "heterogeneous"), (0.4, 0.4, 0.1, 0.1))
    return _Lesion(
        malignant=False,
        irregular=bool(rng.random() < 0.15),
        parallel=bool(rng.random() < 0.85),
        margin=pick(("circumscribed", "indistinct", "angular"), (0.8, 0.15, 0.05)),
        echo=echo,
        posterior="enhancement"
        if echo == "anechoic"
        else pick(("enhancement", "none", "shadowing"), (0.45, 0.45, 0.1)),
    )


def _write_case(
    out_dir: Path,
    scanner: Scanner,
    number: int,
    malignant: bool,
    rng: np.random.Generator,
    seed: int,
) -> BreastUSImage:
    lesion = _draw_lesion(rng, malignant)
    region_rows = round(scanner.depth_mm / scanner.pixel_mm)
    region_cols = round(scanner.width_mm / scanner.pixel_mm)
    amplitude, lesion_mask = _tissue(rng, scanner, region_rows, region_cols, lesion)
    bmode = _log_compress(amplitude * speckle(rng, amplitude.shape, scanner.speckle_px), scanner)
    rows = HEADER_ROWS + region_rows + MARGIN
    cols = MARGIN + region_cols + SIDE_COLUMNS
    x0, y0 = MARGIN, HEADER_ROWS
    canvas = np.zeros((rows, cols), dtype=np.uint8)
    canvas[y0 : y0 + region_rows, x0 : x0 + region_cols] = bmode
    letter = scanner.site[-1]
    patient_id = f"FAKE-US{letter}-{number:04d}"
    patient_name = f"FAKE^PATIENT{letter}{number:04d}"
    study_date = _STUDY_START + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    header = (patient_name, f"{patient_id}  {study_date.isoformat()}")
    pixels, text_boxes = _annotate(canvas, header, scanner, (x0, y0, region_cols))
    full_lesion = np.zeros((rows, cols), dtype=bool)
    full_lesion[y0 : y0 + region_rows, x0 : x0 + region_cols] = lesion_mask
    region = (x0, y0, x0 + region_cols - 1, y0 + region_rows - 1)
    ds = _dataset(scanner, patient_id, patient_name, study_date, region, seed)
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = pixels.tobytes()
    path = out_dir / scanner.site / f"{patient_id}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return BreastUSImage(
        path=path,
        patient_id=patient_id,
        patient_name=patient_name,
        site=scanner.site,
        malignant=int(malignant),
        birads=lesion.birads,
        region=region,
        lesion=full_lesion,
        text_boxes=text_boxes,
        burned_text=(patient_name, patient_id, study_date.isoformat()),
    )


def _tissue(
    rng: np.random.Generator, scanner: Scanner, rows: int, cols: int, lesion: _Lesion
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Echo amplitude of the tissue layers with the lesion, and the lesion's mask."""
    mm = scanner.pixel_mm
    depth = (np.arange(rows, dtype=np.float64)[:, None] + 0.5) * mm
    lateral = (np.arange(cols, dtype=np.float64)[None, :] + 0.5) * mm

    def boundary(mean_mm: float, wobble_mm: float) -> NDArray[np.float64]:
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(15, 40)
        return np.asarray(mean_mm + wobble_mm * np.sin(2 * np.pi * lateral / period + phase))

    fat_end = boundary(rng.uniform(5, 9), 1.5)
    gland_end = fat_end + boundary(rng.uniform(12, 16), 2.5)
    muscle_start = gland_end + rng.uniform(2, 4)
    muscle_end = muscle_start + rng.uniform(5, 8)
    texture = gaussian_filter(rng.standard_normal((rows, cols)), (2.0 / mm, 4.0 / mm))
    texture /= texture.std() + 1e-9
    echo = np.full((rows, cols), 0.08)
    echo = np.where(depth < muscle_end, 0.3 + 0.15 * np.sin(depth * 2.2), echo)  # striated muscle
    echo = np.where(depth < muscle_start, 0.12, echo)  # retromammary fat
    echo = np.where(depth < gland_end, 0.6 * np.exp(0.3 * texture), echo)  # fibroglandular
    echo = np.where(depth < fat_end, 0.15 * np.exp(0.2 * texture), echo)  # subcutaneous fat
    ligaments = np.abs(np.sin(lateral / rng.uniform(3, 6) + depth / 4 + texture)) > 0.97
    echo = np.where((depth < fat_end) & ligaments, 0.6, echo)  # Cooper's ligaments
    echo = np.where(depth < 1.8, 1.0, echo)  # skin
    centre_y = float(rng.uniform(fat_end.mean() + 5, gland_end.mean() - 2))
    centre_x = float(rng.uniform(0.3, 0.7) * cols * mm)
    weight = _lesion_weight(rng, depth - centre_y, lateral - centre_x, mm, lesion)
    inside = {
        "anechoic": 0.01,
        "hypoechoic": 0.06,
        "isoechoic": 0.3,
        "heterogeneous": 0.06,
    }[lesion.echo] + np.zeros((rows, cols))
    if lesion.echo == "heterogeneous":
        mottle = gaussian_filter(rng.standard_normal((rows, cols)), 1.2)
        inside = inside * np.exp(1.2 * np.clip(mottle * 3, -1, 1))
    echo = echo * (1 - weight) + inside * weight
    factor = {"enhancement": 2.0, "none": 1.0, "shadowing": 0.25}[lesion.posterior]
    behind = np.clip(np.maximum.accumulate(weight, axis=0) - weight, 0, 1)
    fade = np.exp(-np.clip(depth - centre_y, 0, None) / 25.0)
    echo = echo * (1 + (factor - 1) * behind * fade)
    attenuation = np.exp(-depth / rng.uniform(60, 90))  # imperfect time-gain compensation
    return echo * attenuation, weight > 0.5


def _lesion_weight(
    rng: np.random.Generator,
    dy: NDArray[np.float64],
    dx: NDArray[np.float64],
    mm: float,
    lesion: _Lesion,
) -> NDArray[np.float64]:
    """Soft lesion membership in [0, 1] from a polar outline; margins set the edge."""
    radius = rng.uniform(4.0, 7.0)
    aspect = rng.uniform(1.3, 1.8) if lesion.parallel else rng.uniform(0.7, 1.0)  # width/height
    theta = np.arctan2(dy, dx)
    distance = np.hypot(dx / np.sqrt(aspect), dy * np.sqrt(aspect))
    outline = np.ones_like(theta)
    for k in range(2, 6):
        amplitude = rng.uniform(0.08, 0.16) if lesion.irregular else rng.uniform(0.0, 0.03)
        outline += amplitude * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if lesion.margin == "angular":
        outline += 0.18 * np.abs(np.cos(3 * theta + rng.uniform(0, 2 * np.pi))) ** 6
    if lesion.margin == "spiculated":
        for angle in rng.uniform(-np.pi, np.pi, size=int(rng.integers(6, 11))):
            gap = np.angle(np.exp(1j * (theta - angle)))
            outline += rng.uniform(0.4, 0.8) * np.exp(-((gap / 0.06) ** 2))
    blur_mm = {"circumscribed": 0.25, "indistinct": 1.2, "angular": 0.5, "spiculated": 0.6}
    edge = blur_mm[lesion.margin]
    return np.asarray(1 / (1 + np.exp((distance - radius * outline) / max(edge, mm / 2))))


def speckle(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, float]
) -> NDArray[np.float64]:
    """Fully developed speckle: |smoothed complex Gaussian|, Rayleigh with unit mean power."""
    real = gaussian_filter(rng.standard_normal(shape), sigma)
    imaginary = gaussian_filter(rng.standard_normal(shape), sigma)
    magnitude = np.hypot(real, imaginary)
    return np.asarray(magnitude / np.sqrt(np.mean(magnitude**2)))


def _log_compress(envelope: NDArray[np.float64], scanner: Scanner) -> NDArray[np.uint8]:
    """Display grey levels: decibels plus gain, mapped over the dynamic range."""
    decibels = 20 * np.log10(envelope + 1e-6) + scanner.gain_db
    grey = (decibels + scanner.dynamic_range_db - 3) / scanner.dynamic_range_db
    return np.asarray(np.clip(grey * 255, 0, 255).round(), dtype=np.uint8)


def _annotate(
    canvas: NDArray[np.uint8],
    header: tuple[str, str],
    scanner: Scanner,
    region: tuple[int, int, int],
) -> tuple[NDArray[np.uint8], tuple[tuple[int, int, int, int], ...]]:
    """Burn the header text and depth scale in beside the region ``(x0, y0, width)``, crisp
    and at full intensity as scanners draw them; return pixels (H, W[, 3]) and text boxes."""
    x0, y0, width = region
    ink = Image.new("L", (canvas.shape[1], canvas.shape[0]))
    draw = ImageDraw.Draw(ink)
    font = ImageFont.load_default(size=9)
    boxes = []
    for line, text in enumerate(header):
        draw.text((x0 + 2, 1 + line * 11), text, fill=255, font=font)
        left, top, right, bottom = draw.textbbox((x0 + 2, 1 + line * 11), text, font=font)
        boxes.append((int(left), int(top), int(right), int(bottom)))
    scale_x = x0 + width + 3
    for centimetre in range(int(scanner.depth_mm // 10) + 1):
        y = y0 + round(centimetre * 10 / scanner.pixel_mm)
        draw.line([(scale_x, y), (scale_x + 4, y)], fill=255)
        draw.text((scale_x + 7, max(y - 5, y0)), str(centimetre), fill=255, font=font)
    strokes = np.asarray(ink) > 100
    if scanner.samples == 1:
        pixels = canvas.copy()
        pixels[strokes] = 255
    else:
        pixels = np.repeat(canvas[..., None], 3, axis=2)
        pixels[strokes] = (255, 230, 90)
    return pixels, tuple(boxes)


def _dataset(
    scanner: Scanner,
    patient_id: str,
    patient_name: str,
    study_date: dt.date,
    region: tuple[int, int, int, int],
    seed: int,
) -> Dataset:
    def uid(*parts: str) -> UID:
        return generate_uid(entropy_srcs=[_UID_ROOT, str(seed), patient_id, *parts])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("sop")
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.PatientBirthDate = (study_date - dt.timedelta(days=365 * 55)).strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = patient_id.replace("FAKE-", "FAKEACC")
    ds.ReferringPhysicianName = "FAKE^DOCTOR"
    ds.StudyID = "1"
    ds.StudyDescription = "US BREAST TARGETED"
    ds.SeriesDescription = "BREAST LESION"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.Modality = "US"
    ds.BodyPartExamined = "BREAST"
    ds.Manufacturer = scanner.manufacturer
    ds.ManufacturerModelName = scanner.model
    ds.InstitutionName = scanner.institution
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = scanner.samples
    ds.PhotometricInterpretation = "RGB" if scanner.samples == 3 else "MONOCHROME2"
    if scanner.samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    x0, y0, x1, y1 = region
    delta_cm = scanner.pixel_mm / 10
    item = Dataset()
    item.RegionSpatialFormat = 1  # 2D tissue
    item.RegionDataType = 1  # tissue
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3  # cm
    item.PhysicalDeltaX = item.PhysicalDeltaY = delta_cm
    ds.SequenceOfUltrasoundRegions = [item]
    return ds
