"""A seeded planted-PHI corpus: DICOM files full of obviously fake identifiers, and bad inputs.

Every identifier is fake (``FAKE...``) and recorded, so a test or benchmark can search output bytes
for each one. The corpus covers CT, MR, US (header bands with burned-in text), secondary capture
(BurnedInAnnotation=YES), structured reports with deep content trees and references to the images,
private tags (identifying and safe), nested sequences and four character sets. Text rendering for
burned-in annotation needs Pillow (the ``wsi`` or ``dev`` extra).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

CT, MR, US = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.6.1"
SC, SR = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.11"
UID_ROOT = "1.2.826.0.1.3680043.10.999."  # a test root: never a real hospital's
SAFE_PRIVATE = (("SAFEVENDOR", 0x0011, 0x01),)

# (SpecificCharacterSet, family name, given name): one per character-set family.
NAMES = (
    ("ISO_IR 6", "FAKEPATIENT", "ALPHA"),
    ("ISO_IR 100", "FAKEMÜLLER", "JÖRGFAKE"),
    ("ISO_IR 192", "FAKEŁUKASZ", "ŻÓŁWFAKE"),
    ("\\ISO 2022 IR 87", "偽山田", "偽太郎"),
)


@dataclass
class Planted:
    """One generated file and the identifying values planted in it (text and burned-in)."""

    path: Path
    modality: str
    patient: str
    values: list[str]
    burned_box: tuple[int, int, int, int] | None = None  # rows y0:y1, columns x0:x1


@dataclass
class Corpus:
    """The generated files, grouped by patient, with every planted value."""

    files: list[Planted] = field(default_factory=list)

    @property
    def values(self) -> set[str]:
        """Every planted identifying value of the corpus."""
        return {value for planted in self.files for value in planted.values}


def _draw_text(pixels: NDArray[np.uint16], text: str, x: int, y: int) -> tuple[int, int, int, int]:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (int(pixels.shape[1]), int(pixels.shape[0])))
    ImageDraw.Draw(image).text((x, y), text, fill=255, font=ImageFont.load_default())
    ink = np.asarray(image) > 100
    pixels[ink] = 255
    box = np.argwhere(ink)
    (y0, x0), (y1, x1) = box.min(axis=0), box.max(axis=0)
    return int(y0), int(y1) + 1, int(x0), int(x1) + 1


class _Patient:
    """A fake patient with identifiers, dates and a character set."""

    def __init__(self, rng: random.Random, index: int, seed: int) -> None:
        charset, family, given = NAMES[index % len(NAMES)]
        self.charset = charset
        self.index = index
        suffix = f"{seed:02d}{index:03d}"
        if charset.startswith("\\"):
            self.name = f"FAKEYAMADA{suffix}^TARO={family}^{given}"
        else:
            self.name = f"{family}{suffix}^{given}"
        self.patient_id = f"FAKEID{suffix}"
        self.other_id = f"FAKEMRN{suffix}"
        self.birth = f"19{rng.randint(40, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        self.address = f"{rng.randint(1, 99)} FAKE STREET, FAKETOWN{suffix}"
        self.phone = f"+44 20 7946 0{rng.randint(100, 999)}"
        self.accession = f"FAKEACC{suffix}"

    @property
    def values(self) -> list[str]:
        return [
            self.patient_id,
            self.other_id,
            self.birth,
            self.address,
            self.accession,
            *[p for p in self.name.replace("=", "^").split("^") if len(p) >= 4],
        ]


class _Generator:
    def __init__(self, out: Path, seed: int) -> None:
        self.out = out
        self.seed = seed
        self.rng = random.Random(seed)
        self.counter = 0

    def uid(self) -> str:
        self.counter += 1
        return f"{UID_ROOT}{self.seed}.{self.counter}"

    def base(self, p: _Patient, sop_class: str, modality: str, study: dict[str, str]) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = p.charset
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = self.uid()
        ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate = (
            study["date"],
            study["date"],
            study["date"],
        )
        ds.ContentDate = study["date"]
        ds.StudyTime = ds.SeriesTime = "101500"
        ds.AcquisitionDateTime = study["date"] + "101502.000000"
        ds.AccessionNumber = p.accession + study["n"]
        ds.Modality = modality
        ds.Manufacturer = "FAKE MANUFACTURER"
        ds.InstitutionName = "FAKE GENERAL HOSPITAL"
        ds.InstitutionAddress = "1 FAKE HOSPITAL ROAD, FAKEVILLE"
        ds.ReferringPhysicianName = "FAKEDOCTOR^REFERRER"
        ds.StationName = "FAKESTATION1"
        ds.StudyDescription = f"CT CHEST {p.patient_id} FOLLOW-UP"
        ds.SeriesDescription = "AXIAL 5MM"
        ds.OperatorsName = ["FAKEOPERATOR^ONE", "FAKEOPERATOR^TWO"]
        ds.PatientName = p.name
        ds.PatientID = p.patient_id
        ds.IssuerOfPatientID = "FAKEISSUER"
        ds.PatientBirthDate = p.birth
        ds.PatientSex = "O"
        ds.PatientAge = "061Y"
        ds.PatientAddress = p.address
        ds.PatientTelephoneNumbers = p.phone
        ds.OtherPatientIDs = p.other_id
        other = Dataset()
        other.PatientID = p.other_id
        other.IssuerOfPatientID = "FAKEOTHERISSUER"
        ds.OtherPatientIDsSequence = [other]
        ds.DeviceSerialNumber = "FAKESERIAL0042"
        ds.StudyInstanceUID = study["uid"]
        ds.StudyID = "FAKESTUDY" + study["n"]
        request = Dataset()
        request.AccessionNumber = ds.AccessionNumber
        request.RequestedProcedureID = "FAKEPROC" + study["n"]
        request.ScheduledProcedureStepID = "FAKESTEP" + study["n"]
        request.RequestedProcedureDescription = f"CT CHEST FOR {p.patient_id}"
        ds.RequestAttributesSequence = [request]
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        ref.ReferencedSOPInstanceUID = study["uid"]
        ds.ReferencedStudySequence = [ref]
        ds.add_new(0x00090010, "LO", "FAKEVENDOR")
        ds.add_new(0x00091010, "LO", p.name)
        ds.add_new(0x00091011, "OB", p.patient_id.encode("utf-16-le"))
        ds.add_new(0x00110010, "LO", "SAFEVENDOR")
        ds.add_new(0x00111001, "DS", "1.5")
        return ds

    def image(self, ds: Dataset, rows: int, cols: int, bits: int) -> NDArray[np.uint16]:
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        top = 150 if bits == 8 else 3000
        rng = np.random.default_rng(self.rng.randrange(2**32))
        return rng.integers(0, top, (rows, cols), dtype=np.uint16)

    def write(self, ds: Dataset, name: str, ts: str = ExplicitVRLittleEndian) -> Path:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(ds.SOPClassUID)
        meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
        meta.TransferSyntaxUID = UID(ts)
        meta.SourceApplicationEntityTitle = "FAKEAE"
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        return path


def _content_tree(p: _Patient, date: str, depth: int) -> Sequence:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "121071", "DCM"
    concept.CodeMeaning = "Finding"
    item.ConceptNameCodeSequence = [concept]
    item.TextValue = (
        f"Nodule stable since {date[:4]}-{date[4:6]}-{date[6:]}; patient {p.patient_id}"
    )
    observer = Dataset()
    observer.RelationshipType = "HAS OBS CONTEXT"
    observer.ValueType = "PNAME"
    observer.PersonName = "FAKEREADER^DEPTH" + str(depth)
    observer.ObservationDateTime = date + "120000"
    items = [item, observer]
    if depth > 0:
        container = Dataset()
        container.RelationshipType = "CONTAINS"
        container.ValueType = "CONTAINER"
        container.ContinuityOfContent = "SEPARATE"
        container.ContentSequence = _content_tree(p, date, depth - 1)
        items.append(container)
    return Sequence(items)


def generate_corpus(out: Path, patients: int = 4, seed: int = 0, images: int = 3) -> Corpus:
    """Write a seeded corpus under ``out``: per patient two studies of CT/MR, US, SC and SR."""
    gen = _Generator(out, seed)
    corpus = Corpus()
    for index in range(patients):
        p = _Patient(gen.rng, index, seed)
        for n in range(2):
            date = f"20{gen.rng.randint(10, 23)}{gen.rng.randint(1, 12):02d}{10 + n:02d}"
            study = {"uid": gen.uid(), "date": date, "n": str(n)}
            values = [*p.values, date, p.accession + study["n"], "FAKEDOCTOR", "FAKEOPERATOR"]
            values += ["FAKE GENERAL HOSPITAL", "FAKESTATION1", "FAKESERIAL0042", study["uid"]]
            _write_study(gen, corpus, p, study, values, images, index, n)
    return corpus


def _write_study(
    gen: _Generator,
    corpus: Corpus,
    p: _Patient,
    study: dict[str, str],
    values: list[str],
    images: int,
    index: int,
    n: int,
) -> None:
    folder = f"{p.name.split('^')[0]}_{p.patient_id}/{study['date']}"
    modality, sop_class = ("CT", CT) if (index + n) % 2 == 0 else ("MR", MR)
    series, frame = gen.uid(), gen.uid()
    refs: list[tuple[str, str]] = []
    transfer = ImplicitVRLittleEndian if index % 3 == 1 else ExplicitVRLittleEndian
    if index % 4 == 3 and n == 1:
        transfer = ExplicitVRBigEndian
    for i in range(images):
        ds = gen.base(p, sop_class, modality, study)
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.InstanceNumber = i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        pixels = gen.image(ds, 64, 64, 16)
        if i > 0:
            src = Dataset()
            src.ReferencedSOPClassUID = sop_class
            src.ReferencedSOPInstanceUID = refs[-1][1]
            ds.ReferencedImageSequence = [src]
        ds.PixelData = (
            pixels.tobytes() if transfer != ExplicitVRBigEndian else pixels.byteswap().tobytes()
        )
        refs.append((sop_class, str(ds.SOPInstanceUID)))
        path = gen.write(ds, f"{folder}/{modality}_{i}.dcm", transfer)
        corpus.files.append(
            Planted(path, modality, p.patient_id, [*values, str(ds.SOPInstanceUID)])
        )
    # Ultrasound: header band with burned-in text above the data region.
    ds = gen.base(p, US, "US", study)
    ds.SeriesInstanceUID = gen.uid()
    pixels = gen.image(ds, 120, 200, 8)
    header = f"{p.patient_id} {study['date']}"
    box = _draw_text(pixels, header, 4, 4)
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 30
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 199, 119
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.PhysicalDeltaX = region.PhysicalDeltaY = 0.01
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    path = gen.write(ds, f"{folder}/US_0.dcm")
    corpus.files.append(Planted(path, "US", p.patient_id, [*values], box))
    # Secondary capture: annotation burned into the middle of the image.
    ds = gen.base(p, SC, "OT", study)
    ds.SeriesInstanceUID = gen.uid()
    ds.BurnedInAnnotation = "YES"
    ds.ConversionType = "WSD"
    pixels = gen.image(ds, 96, 160, 8)
    box = _draw_text(pixels, p.accession + study["n"], 20, 40)
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    path = gen.write(ds, f"{folder}/SC_0.dcm")
    corpus.files.append(Planted(path, "SC", p.patient_id, [*values], box))
    # Structured report: deep content tree and evidence references to the images above.
    ds = gen.base(p, SR, "SR", study)
    ds.SeriesInstanceUID = gen.uid()
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ContentSequence = _content_tree(p, study["date"], 5)
    instances = []
    for cls, uid in refs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        instances.append(item)
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = series
    ref_series.ReferencedSOPSequence = instances
    ref_study = Dataset()
    ref_study.StudyInstanceUID = study["uid"]
    ref_study.ReferencedSeriesSequence = [ref_series]
    ds.CurrentRequestedProcedureEvidenceSequence = [ref_study]
    path = gen.write(ds, f"{folder}/SR_0.dcm")
    corpus.files.append(Planted(path, "SR", p.patient_id, [*values, "FAKEREADER"]))


def _raw_part10(ds: Dataset, declared: str, implicit: bool) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ds.SOPClassUID)
    meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = UID(declared)
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    return fp.getvalue()


def write_bad_inputs(out: Path, seed: int = 0) -> dict[str, str]:
    """Write malformed inputs under ``out``; return file name -> expected quarantine reason."""
    gen = _Generator(out / "_", seed)
    out.mkdir(parents=True, exist_ok=True)
    p = _Patient(gen.rng, 0, seed)
    study = {"uid": gen.uid(), "date": "20200202", "n": "0"}

    def image() -> Dataset:
        ds = gen.base(p, CT, "CT", study)
        ds.SeriesInstanceUID = gen.uid()
        ds.PixelData = gen.image(ds, 32, 32, 16).tobytes()
        return ds

    good = _raw_part10(image(), ExplicitVRLittleEndian, implicit=False)
    cases: dict[str, tuple[bytes, str]] = {
        "garbage.dcm": (bytes(random.Random(seed).randrange(256) for _ in range(3000)), "readable"),
        "empty.dcm": (b"", "readable"),
        "truncated.dcm": (good[: len(good) // 2], "truncated"),
        "truncated_header.dcm": (good[:300], "readable"),
        "lying_ts.dcm": (_raw_part10(image(), ExplicitVRLittleEndian, True), "transfer syntax"),
        "fake_jpeg.dcm": (_raw_part10(image(), JPEGBaseline8Bit, False), "encapsulated"),
    }
    ds = image()
    nested = ds.RequestAttributesSequence[0]
    for _ in range(40):
        inner = Dataset()
        inner.RequestAttributesSequence = [nested]
        nested = inner
    ds.RequestAttributesSequence = [nested]
    cases["deep.dcm"] = (_raw_part10(ds, ExplicitVRLittleEndian, False), "nested deeper")
    broken = bytearray(_raw_part10(image(), ExplicitVRLittleEndian, False))
    at = broken.find(b"\x08\x00\x50\x00SH")  # Accession Number inside the request sequence item
    broken[at - 8 : at - 4] = (0x7FFFFFF0).to_bytes(4, "little")  # the item claims 2 GiB
    cases["bad_item_length.dcm"] = (bytes(broken), "")
    ds = image()
    ds.add_new(0x00100010, "US", 7)  # Patient's Name with a numeric VR
    del ds.PatientID
    cases["wrong_vr.dcm"] = (_raw_part10(ds, ExplicitVRLittleEndian, False), "")
    for name, (data, _) in cases.items():
        (out / name).write_bytes(data)
    return {name: reason for name, (_, reason) in cases.items()}
