"""Seeded generators of synthetic DICOM cohorts for tests, the demo and benchmarks.

Every identifying value is obviously fake (``FAKE^PATIENT0001``, ``FAKE-0001``, study dates in
2071-2079) and every UID is a ``2.25.`` UID derived from the seed, so the same seed writes
byte-identical files. Files are Part-10, Explicit VR Little Endian, laid out as
``out_dir/<patient>/<study>/<series>/<n>.dcm``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "PRIVATE_CREATOR",
    "SOP_CLASSES",
    "CohortManifest",
    "generate_cohort",
    "generate_large",
    "generate_many_small",
    "write_bad_inputs",
]

SOP_CLASSES: dict[str, UID] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "MG": DigitalMammographyXRayImageStorageForPresentation,
    "US": UltrasoundImageStorage,
}
"""SOP Class UID written for each supported modality."""

IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionAddress",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "StudyDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
"""Attributes whose planted values the manifest records (plus one private-tag value)."""

PRIVATE_CREATOR = "SYNTHVENDOR PRIVATE"
"""Private creator of the (0009,xx10) element that hides a fake identifier, as vendors do."""

_UID_NAMESPACE = uuid.UUID("6f1c0d2e-5b7a-4c1e-9f3d-0a6b2c8e4d17")
_STUDY_START = dt.date(2071, 1, 1)
_STUDY_SPAN_DAYS = 5 * 365
_INSTITUTION_ADDRESS = "1 Fake Street, Nowhere"
_VENDORS = ("SynthVendor Medical", "Phantomray Imaging", "Mockwave Systems", "Notreal Diagnostics")
_MODELS = {"CT": "Helix 64", "MR": "Magna 70", "MG": "Breastline DR", "US": "Echo U9"}
_BODY_PARTS: dict[str, tuple[str, ...]] = {
    "CT": ("CHEST", "ABDOMEN", "PELVIS"),
    "MR": ("PROSTATE", "BREAST", "BRAIN"),
    "MG": ("BREAST",),
    "US": ("BREAST",),
}
_BREAST_IMAGING = {"MG", "US"}  # their patients are women
_SEX_OF_BODY_PART = {("MR", "PROSTATE"): "M", ("MR", "BREAST"): "F"}
_STUDY_DESCRIPTIONS = {
    ("CT", "CHEST"): "CT CHEST WITH CONTRAST",
    ("CT", "ABDOMEN"): "CT ABDOMEN PORTAL VENOUS",
    ("CT", "PELVIS"): "CT PELVIS WITH CONTRAST",
    ("MR", "PROSTATE"): "MR PROSTATE MULTIPARAMETRIC",
    ("MR", "BREAST"): "MR BREAST DYNAMIC BILATERAL",
    ("MR", "BRAIN"): "MR BRAIN WITH GADOLINIUM",
    ("MG", "BREAST"): "MAMMOGRAPHY SCREENING BILATERAL",
    ("US", "BREAST"): "US BREAST TARGETED",
}
_CT_SERIES = ("AXIAL 5mm STANDARD", "AXIAL 1mm THIN", "CORONAL MPR 3mm")
_MR_SERIES = {
    "PROSTATE": ("T2W TSE AX", "DWI b1400", "ADC MAP"),
    "BREAST": ("T1 DYN PRE", "T1 DYN POST", "T2 STIR AX"),
    "BRAIN": ("T1 MPRAGE", "T2 FLAIR AX", "DWI TRACE"),
}
_MG_VIEWS = (("L", "CC", "399162004"), ("R", "CC", "399162004"), ("L", "MLO", "399368009"))
_MG_VIEW_MEANINGS = {"CC": "cranio-caudal", "MLO": "medio-lateral oblique"}


@dataclass(frozen=True)
class CohortManifest:
    """What ``generate_cohort`` wrote: an exact oracle for ingest and de-identification tests."""

    files: list[Path]
    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
    by_modality: dict[str, int]
    """Number of series per modality."""
    identifiers: dict[Path, list[str]]
    """Per file, every identifying value planted in it (see ``IDENTIFYING_KEYWORDS``)."""


@dataclass(frozen=True)
class _Site:
    """Per-run constants shared by every dataset a generator builds."""

    namespace: str
    name: str
    vendors: tuple[str, ...]
    rows: int
    columns: int


def generate_cohort(
    out_dir: Path,
    *,
    patients: int = 8,
    seed: int = 0,
    modalities: Sequence[str] = ("CT", "MR", "MG", "US"),
    site: str = "SYNTH-SITE-A",
    rows: int = 64,
    columns: int = 64,
) -> CohortManifest:
    """Write a realistic cohort: 1-3 studies per patient, 1-3 series per study, 1-6 instances.

    Each study is of one modality; patients with MG or US (breast) studies are women.
    """
    rng = np.random.default_rng(seed)
    ctx = _site(f"cohort/{seed}", site, modalities, rows, columns)
    files: list[Path] = []
    identifiers: dict[Path, list[str]] = {}
    by_modality: Counter[str] = Counter()
    studies: set[str] = set()
    for number in range(1, patients + 1):
        study_modalities = [str(m) for m in rng.choice(modalities, size=rng.integers(1, 4))]
        for study in _patient_studies(rng, ctx, number, study_modalities):
            studies.add(study.StudyInstanceUID)
            for series_number in range(1, int(rng.integers(1, 4)) + 1):
                ds = _series_dataset(rng, ctx, study, series_number)
                by_modality[ds.Modality] += 1
                for n in range(1, int(rng.integers(1, 7)) + 1):
                    path = _write_instance(ds, out_dir, n, _noise(rng, ds))
                    files.append(path)
                    identifiers[path] = _planted(ds)
    return CohortManifest(
        files=files,
        patients=patients,
        studies=len(studies),
        series=sum(by_modality.values()),
        instances=len(files),
        bytes=sum(path.stat().st_size for path in files),
        by_modality=dict(by_modality),
        identifiers=identifiers,
    )


def generate_many_small(
    out_dir: Path,
    count: int,
    *,
    seed: int = 0,
    site: str = "SYNTH-SITE-A",
    modalities: Sequence[str] = ("CT", "MR", "MG", "US"),
    instances_per_series: int = 100,
) -> list[Path]:
    """Quickly write ``count`` small files: 2 studies per patient, 2 series per study.

    Pixel data is one seeded noise image per modality and photometric interpretation, so the
    cost per file is little more than one ``dcmwrite``.
    """
    rng = np.random.default_rng(seed)
    ctx = _site(f"small/{seed}", site, modalities, 64, 64)
    templates: dict[tuple[str, str], bytes] = {}
    paths: list[Path] = []
    for ds in _benchmark_series(rng, ctx, modalities):
        if len(paths) >= count:
            break
        key = (ds.Modality, ds.PhotometricInterpretation)
        if key not in templates:
            templates[key] = _noise(rng, ds)
        for n in range(1, min(instances_per_series, count - len(paths)) + 1):
            paths.append(_write_instance(ds, out_dir, n, templates[key]))
    return paths


def generate_large(
    out_dir: Path,
    count: int,
    *,
    frames: int = 60,
    rows: int = 512,
    columns: int = 512,
    seed: int = 0,
    site: str = "SYNTH-SITE-A",
) -> list[Path]:
    """Write ``count`` Enhanced CT files of ``frames`` 16-bit frames each, one patient per file."""
    rng = np.random.default_rng(seed)
    ctx = _site(f"large/{seed}", site, ("CT",), rows, columns)
    paths: list[Path] = []
    for number in range(1, count + 1):
        (study,) = _patient_studies(rng, ctx, number, ["CT"])
        ds = _series_dataset(rng, ctx, study, 1)
        _to_enhanced_ct(ds, frames)
        paths.append(_write_instance(ds, out_dir, 1, _noise(rng, ds)))
    return paths


def write_bad_inputs(out_dir: Path) -> dict[str, Path]:
    """Write one file per kind of awkward input, keyed by kind.

    pydicom raises on ``not_dicom``, ``empty``, ``truncated`` (cut inside the length field of
    PixelData) and ``garbage_after_preamble`` (junk that starts like a file meta sequence).
    It reads the others: ``truncated_pixel_data`` (cut halfway through the pixel values, caught
    only by checking their length), ``no_sop_uid`` (no SOP Instance UID anywhere) and
    ``preambleless_valid``, a good implicit VR dataset without preamble or file meta that must
    be ingested (pydicom needs ``force=True``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    valid = _part10_bytes(_example_instance(), enforce_file_format=True)
    pixel_data = valid.index(_PIXEL_DATA_HEADER) + len(_PIXEL_DATA_HEADER)
    no_sop = _example_instance()
    del no_sop.SOPInstanceUID
    del no_sop.file_meta.MediaStorageSOPInstanceUID
    no_sop.preamble = bytes(128)
    preambleless = _example_instance()
    del preambleless.file_meta
    junk = np.random.default_rng(0).bytes(512)
    contents = {
        "not_dicom": b"This is a plain text file, not DICOM.\n",
        "empty": b"",
        "truncated": valid[: pixel_data + 2],
        "truncated_pixel_data": valid[: (pixel_data + 4 + len(valid)) // 2],
        "garbage_after_preamble": bytes(128) + b"DICM" + _SQ_UNDEFINED_LENGTH + junk,
        "no_sop_uid": _part10_bytes(no_sop),
        "preambleless_valid": _part10_bytes(preambleless, implicit_vr=True, little_endian=True),
    }
    paths = {kind: out_dir / f"{kind}.dcm" for kind in contents}
    for kind, data in contents.items():
        paths[kind].write_bytes(data)
    return paths


# (7FE0,0010) OW, then 2 reserved bytes and a 4-byte length, in explicit VR little endian.
_PIXEL_DATA_HEADER = b"\xe0\x7f\x10\x00OW\x00\x00"
# (0002,0001) SQ with undefined length: a reader must parse items out of what follows.
_SQ_UNDEFINED_LENGTH = b"\x02\x00\x01\x00SQ\x00\x00\xff\xff\xff\xff"


def _site(namespace: str, name: str, modalities: Sequence[str], rows: int, columns: int) -> _Site:
    """Validate the modalities and pick the site's two vendors (seeded by the site name)."""
    unknown = sorted(set(modalities) - SOP_CLASSES.keys())
    if unknown or not modalities:
        raise ValueError(
            f"modalities must be a non-empty subset of {sorted(SOP_CLASSES)}: {unknown}"
        )
    site_seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    picked = np.random.default_rng(site_seed).choice(_VENDORS, size=2, replace=False)
    return _Site(f"{namespace}/{name}", name, tuple(str(v) for v in picked), rows, columns)


def _uid(*parts: object) -> UID:
    """A deterministic ``2.25.`` UID (at most 44 characters) named by ``parts``."""
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(map(str, parts))).int}")


def _da(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _days(rng: np.random.Generator, low: int, high: int) -> dt.timedelta:
    return dt.timedelta(days=int(rng.integers(low, high)))


def _item(**values: object) -> Dataset:
    """A sequence item with the given keyword values."""
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _code(value: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator="SCT", CodeMeaning=meaning)


def _benchmark_series(
    rng: np.random.Generator, ctx: _Site, modalities: Sequence[str]
) -> Iterator[Dataset]:
    """Endless series datasets: patient after patient, 2 studies each, 2 series per study."""
    number = 0
    while True:
        number += 1
        study_modalities = [modalities[(2 * number + i) % len(modalities)] for i in range(2)]
        for study in _patient_studies(rng, ctx, number, study_modalities):
            yield _series_dataset(rng, ctx, study, 1)
            yield _series_dataset(rng, ctx, study, 2)


def _patient_studies(
    rng: np.random.Generator, ctx: _Site, number: int, modalities: list[str]
) -> list[Dataset]:
    """Patient and study level datasets, one per modality, in date order."""
    sex = "F" if _BREAST_IMAGING & set(modalities) else str(rng.choice(["F", "M"]))
    date = _STUDY_START + _days(rng, 0, _STUDY_SPAN_DAYS)
    birth = date - _days(rng, 30 * 365, 85 * 365)
    patient = _patient_dataset(number, sex, birth)
    studies = []
    for index, modality in enumerate(modalities, start=1):
        body_part = _body_part(rng, modality, sex)
        studies.append(_study_dataset(patient, ctx, index, modality, body_part, date, birth, rng))
        date += _days(rng, 30, 400)
    return studies


def _body_part(rng: np.random.Generator, modality: str, sex: str) -> str:
    allowed = [
        part
        for part in _BODY_PARTS[modality]
        if _SEX_OF_BODY_PART.get((modality, part), sex) == sex
    ]
    return str(rng.choice(allowed))


def _patient_dataset(number: int, sex: str, birth: dt.date) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"FAKE^PATIENT{number:04d}"
    ds.PatientID = f"FAKE-{number:04d}"
    ds.PatientBirthDate = _da(birth)
    ds.PatientSex = sex
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", f"FAKEPRIVATE{number:04d}")
    return ds


def _study_dataset(
    patient: Dataset,
    ctx: _Site,
    index: int,
    modality: str,
    body_part: str,
    date: dt.date,
    birth: dt.date,
    rng: np.random.Generator,
) -> Dataset:
    ds = copy.deepcopy(patient)
    ds.StudyInstanceUID = _uid(ctx.namespace, patient.PatientID, index)
    ds.StudyID = str(index)
    ds.StudyDate = _da(date)
    ds.StudyTime = f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00"
    ds.AccessionNumber = patient.PatientID.replace("FAKE-", "FAKEACC") + f"{index:02d}"
    ds.ReferringPhysicianName = "FAKE^DOCTOR"
    ds.StudyDescription = _STUDY_DESCRIPTIONS[modality, body_part]
    ds.PatientAge = f"{_age(birth, date):03d}Y"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    return ds


def _series_dataset(rng: np.random.Generator, ctx: _Site, study: Dataset, number: int) -> Dataset:
    """Everything but the instance-level attributes of one series of ``study``."""
    ds = copy.deepcopy(study)
    modality: str = ds.Modality
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SeriesInstanceUID = _uid(ds.StudyInstanceUID, number)
    ds.SeriesNumber = number
    ds.SeriesDate = ds.ContentDate = ds.StudyDate
    ds.SeriesTime = ds.ContentTime = ds.StudyTime
    ds.OperatorsName = "FAKE^OPERATOR"
    ds.BurnedInAnnotation = "NO"
    _set_equipment(ds, ctx, str(rng.choice(ctx.vendors)))
    _set_image_pixel(ds, ctx.rows, ctx.columns, samples=1, bits_stored=12)
    _MODALITY_SETUP[modality](ds, rng)
    return ds


def _set_equipment(ds: Dataset, ctx: _Site, vendor: str) -> None:
    ds.Manufacturer = vendor
    ds.ManufacturerModelName = f"{vendor.split()[0]} {_MODELS[ds.Modality]}"
    ds.InstitutionName = ctx.name
    ds.InstitutionAddress = _INSTITUTION_ADDRESS
    ds.StationName = f"FAKE-{ds.Modality}-{ctx.vendors.index(vendor) + 1:02d}"
    digest = hashlib.sha256(f"{ctx.name}/{vendor}/{ds.Modality}".encode()).hexdigest()
    ds.DeviceSerialNumber = f"FAKESN-{digest[:8].upper()}"
    ds.SoftwareVersions = "1.0.0"


def _set_image_pixel(
    ds: Dataset, rows: int, columns: int, *, samples: int, bits_stored: int
) -> None:
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0


def _set_volume(ds: Dataset, thickness: float) -> None:
    """Frame of reference and the geometry shared by a CT or MR series."""
    ds.FrameOfReferenceUID = _uid(ds.SeriesInstanceUID, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = thickness


def _setup_ct(ds: Dataset, rng: np.random.Generator) -> None:
    _set_volume(ds, float(rng.choice([1.0, 2.5, 5.0])))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesDescription = _CT_SERIES[(ds.SeriesNumber - 1) % len(_CT_SERIES)]
    ds.KVP = int(rng.choice([100, 120, 140]))
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400


def _setup_mr(ds: Dataset, rng: np.random.Generator) -> None:
    _set_volume(ds, float(rng.choice([3.0, 4.0, 5.0])))
    descriptions = _MR_SERIES[ds.BodyPartExamined]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SeriesDescription = descriptions[(ds.SeriesNumber - 1) % len(descriptions)]
    field = float(rng.choice([1.5, 3.0]))
    ds.MagneticFieldStrength = field
    ds.ImagingFrequency = round(42.577 * field, 3)
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = int(rng.integers(400, 6000))
    ds.EchoTime = int(rng.integers(10, 120))
    ds.EchoTrainLength = int(rng.integers(1, 32))
    ds.WindowCenter = 600
    ds.WindowWidth = 1200


def _setup_mg(ds: Dataset, rng: np.random.Generator) -> None:
    laterality, view, view_code = _MG_VIEWS[(ds.SeriesNumber - 1) % len(_MG_VIEWS)]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesDescription = f"{laterality} {view}"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.ViewCodeSequence = [_code(view_code, _MG_VIEW_MEANINGS[view])]
    ds.AnatomicRegionSequence = [_code("76752008", "Breast")]
    ds.PixelSpacing = ds.ImagerPixelSpacing = [0.07, 0.07]
    ds.DetectorType = "DIRECT"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.KVP = int(rng.integers(26, 33))
    ds.BodyPartThickness = int(rng.integers(35, 75))
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096


def _setup_us(ds: Dataset, rng: np.random.Generator) -> None:
    samples = int(rng.choice([1, 3]))
    _set_image_pixel(ds, ds.Rows, ds.Columns, samples=samples, bits_stored=8)
    laterality = str(rng.choice(["L", "R"]))
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesDescription = f"BREAST {laterality} RADIAL"
    ds.Laterality = laterality
    ds.SequenceOfUltrasoundRegions = [
        _item(
            RegionSpatialFormat=1,
            RegionDataType=1,
            RegionFlags=0,
            RegionLocationMinX0=0,
            RegionLocationMinY0=0,
            RegionLocationMaxX1=ds.Columns - 1,
            RegionLocationMaxY1=ds.Rows - 1,
            PhysicalUnitsXDirection=3,
            PhysicalUnitsYDirection=3,
            PhysicalDeltaX=0.01,
            PhysicalDeltaY=0.01,
        )
    ]


_MODALITY_SETUP = {"CT": _setup_ct, "MR": _setup_mr, "MG": _setup_mg, "US": _setup_us}


def _to_enhanced_ct(ds: Dataset, frames: int) -> None:
    """Turn a classic CT series dataset into a multi-frame Enhanced CT one."""
    shared = _item(
        PixelMeasuresSequence=[
            _item(PixelSpacing=ds.PixelSpacing, SliceThickness=ds.SliceThickness)
        ],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=ds.ImageOrientationPatient)],
        PixelValueTransformationSequence=[
            _item(RescaleIntercept=-1024, RescaleSlope=1, RescaleType="HU")
        ],
        FrameVOILUTSequence=[_item(WindowCenter=40, WindowWidth=400)],
        CTImageFrameTypeSequence=[_item(FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"])],
    )
    thickness = float(ds.SliceThickness)
    for keyword in (
        "PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient",
        "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth",
    ):  # fmt: skip
        delattr(ds, keyword)
    dimensions = _uid(ds.SeriesInstanceUID, "dimension-organization")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = frames
    ds.AcquisitionDateTime = f"{ds.StudyDate}{ds.StudyTime}"
    ds.ContentQualification = "PRODUCT"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=dimensions)]
    ds.DimensionIndexSequence = [
        _item(
            DimensionOrganizationUID=dimensions,
            DimensionIndexPointer=0x00200032,  # ImagePositionPatient
            FunctionalGroupPointer=0x00209113,  # PlanePositionSequence
        )
    ]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(
            FrameContentSequence=[_item(DimensionIndexValues=[frame + 1])],
            PlanePositionSequence=[_item(ImagePositionPatient=_position(ds, frame, thickness))],
        )
        for frame in range(frames)
    ]


def _position(ds: Dataset, index: int, thickness: float) -> list[float]:
    """Position of slice ``index`` of an axial stack centred on the isocentre."""
    half_width = ds.Columns * 0.35
    return [-half_width, -half_width, round(-100.0 + index * thickness, 3)]


def _noise(rng: np.random.Generator, ds: Dataset) -> bytes:
    """Seeded noise pixel data (even length) matching the image pixel attributes of ``ds``."""
    shape = (int(ds.get("NumberOfFrames", 1)), ds.Rows, ds.Columns, ds.SamplesPerPixel)
    dtype = "u1" if ds.BitsAllocated == 8 else "<u2"
    data = rng.integers(0, 1 << ds.BitsStored, size=shape, dtype=dtype).tobytes()
    return data + b"\0" * (len(data) % 2)


def _set_instance(ds: Dataset, n: int, pixels: bytes) -> None:
    """Make ``ds`` instance ``n`` of its series."""
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(ds.SeriesInstanceUID, n)
    ds.InstanceNumber = n
    if "ImageOrientationPatient" in ds:
        ds.ImagePositionPatient = _position(ds, n - 1, float(ds.SliceThickness))
        ds.SliceLocation = ds.ImagePositionPatient[2]
    ds.PixelData = pixels


def _write_instance(ds: Dataset, out_dir: Path, n: int, pixels: bytes) -> Path:
    """Set the instance attributes of ``ds`` and write it where its UIDs say it belongs."""
    _set_instance(ds, n, pixels)
    folder: Path = out_dir / ds.PatientID / f"study{ds.StudyID}" / f"series{ds.SeriesNumber}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{n}.dcm"
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def _planted(ds: Dataset) -> list[str]:
    """The identifying values present in ``ds``, as they appear in its bytes."""
    values = [str(ds[keyword].value) for keyword in IDENTIFYING_KEYWORDS if keyword in ds]
    values.append(str(ds.private_block(0x0009, PRIVATE_CREATOR)[0x10].value))
    return values


def _example_instance() -> Dataset:
    """One valid mammogram, the raw material of the bad inputs."""
    rng = np.random.default_rng(0)
    ctx = _site("bad-inputs", "SYNTH-SITE-BAD", ("MG",), 16, 16)
    (study,) = _patient_studies(rng, ctx, 9999, ["MG"])
    ds = _series_dataset(rng, ctx, study, 3)
    _set_instance(ds, 1, _noise(rng, ds))
    return ds


def _part10_bytes(ds: Dataset, **write_options: bool) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, **write_options)
    return buffer.getvalue()
