"""Write de-identified copies of slides and verify them.

TIFF-family slides (Aperio SVS, Hamamatsu NDPI, generic tiled TIFF, OME-TIFF) are copied and edited
in place, so pyramid tiles keep their exact bytes: label and macro pages are unlinked from the IFD
chain and overwritten with zeros, identifying tags (dates, artist, host, document name, XMP, NDPI
reference/serial) are blanked and image descriptions are rebuilt from an allow-list (Aperio) or
stripped of identifying elements (OME-XML). DICOM-WSI instances are rewritten with pydicom without
their LABEL/OVERVIEW instances and with identifying attributes replaced. Every output is verified
(no identifier from the input or the caller may occur in its bytes, no label/macro image, readable
pyramid) before it is moved into place atomically.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from oncofed.storage.atomic import fsync_dir
from oncofed.wsi.convert import UidSource, convert_to_dicom
from oncofed.wsi.errors import SlideDeidError
from oncofed.wsi.open import DICOM_WSI, OME_TIFF, detect_format, open_slide

ASSOCIATED = frozenset({"label", "macro", "overview", "barcode"})
BLANK_TAGS = {
    269: "DocumentName",
    285: "PageName",
    306: "DateTime",
    315: "Artist",
    316: "HostComputer",
    700: "XMP",
    42016: "ImageUniqueID",
    65427: "NDPI reference",
    65442: "NDPI scanner serial",
    65449: "NDPI properties",
}
APERIO_KEEP = frozenset(
    {
        "AppMag",
        "MPP",
        "StripeWidth",
        "Left",
        "Top",
        "LineCameraSkew",
        "LineAreaXOffset",
        "LineAreaYOffset",
        "Focus Offset",
        "OriginalWidth",
        "OriginalHeight",
        "Filtered",
        "Exposure Time",
        "Exposure Scale",
        "DisplayColor",
        "Gamma",
        "ICC Profile",
    }
)
OME_DROP = frozenset(
    {"Experimenter", "ExperimenterGroup", "StructuredAnnotations", "AcquisitionDate", "Description"}
)
DICOM_REPLACE = (
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "ContainerIdentifier",
    "SpecimenIdentifier",
    "DeviceSerialNumber",
    "StudyID",
    "ReferringPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "PatientBirthDate",
    "OtherPatientIDs",
    "PatientComments",
    "ImageComments",
    "TextValue",
    "LabelText",
    "BarcodeValue",
)
NDPI_MAGNIFICATION = 65421
NDPI_MACRO = -1.0
MIN_IDENTIFIER = 4
PLACEHOLDERS = frozenset({"unknown", "none", "n/a", "anonymous", "deidentified", "null"})
SCAN_CHUNK = 8 << 20
IDENTIFYING_KEY = re.compile(
    r"date|time|user|name|patient|barcode|serial|label|file|slide|case|accession|\bid\b", re.I
)
SUFFIXES = {"aperio": ".svs", "hamamatsu": ".ndpi", "generic-tiff": ".tiff", OME_TIFF: ".ome.tiff"}


@dataclass
class DeidReport:
    """What de-identification removed, and where the verified copy is."""

    source: Path
    output: Path
    format: str
    removed_images: list[str] = field(default_factory=list)
    scrubbed: list[str] = field(default_factory=list)
    identifiers_checked: int = 0
    found: set[str] = field(default_factory=set, repr=False)  # the identifiers searched for


def output_suffix(fmt: str) -> str:
    """File suffix for a de-identified slide of format ``fmt`` ('' for a DICOM-WSI folder)."""
    return "" if fmt == DICOM_WSI else SUFFIXES.get(fmt, ".tiff")


def deidentify_slide(
    source: str | Path,
    output: str | Path,
    *,
    identifiers: Iterable[str] = (),
    to_dicom: bool = False,
    uid_source: UidSource = None,
) -> DeidReport:
    """Write a de-identified, verified copy of ``source`` to ``output`` (file, or folder for
    DICOM-WSI). ``identifiers`` are extra strings (e.g. the patient's name) that must not occur in
    the output; identifiers found in the slide's own metadata are always checked too.

    With ``to_dicom`` the copy is a DICOM-WSI folder whatever the source format (pyramid levels and
    JPEG tile bytes kept; see :func:`oncofed.wsi.convert.convert_to_dicom`, which also explains
    ``uid_source``); this is also the way to de-identify OpenSlide formats that cannot be edited
    in place (MIRAX, Ventana, ...)."""
    src, dst = Path(source), Path(output)
    fmt = detect_format(src)
    if dst.exists():
        raise SlideDeidError(f"{dst}: output already exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == DICOM_WSI:
        return _deid_dicom(src, dst, fmt, set(identifiers))
    if to_dicom:
        return _deid_to_dicom(src, dst, fmt, set(identifiers), uid_source)
    if fmt not in SUFFIXES:
        raise SlideDeidError(
            f"{src}: de-identification of {fmt} slides is not supported; convert the slide to "
            "DICOM-WSI first (oncofed wsi deid --to-dicom)"
        )
    return _deid_tiff(src, dst, fmt, set(identifiers))


# --- TIFF family -------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Byte layout of one TIFF file: byte order and field sizes."""

    order: str
    bigtiff: bool

    @property
    def offset_fmt(self) -> str:
        return self.order + ("Q" if self.bigtiff else "I")

    @property
    def count_size(self) -> int:
        return 8 if self.bigtiff else 4

    @property
    def entry_size(self) -> int:
        return 20 if self.bigtiff else 12

    @property
    def header_size(self) -> int:
        return 8 if self.bigtiff else 2


def _deid_tiff(src: Path, dst: Path, fmt: str, extra: set[str]) -> DeidReport:
    import tifffile

    report = DeidReport(source=src, output=dst, format=fmt)
    found = report.found
    found.update(extra)
    fd, tmp_name = tempfile.mkstemp(prefix=".deid-", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(src, tmp)
        with tifffile.TiffFile(src) as tif, tmp.open("r+b") as fh:
            layout = _Layout(tif.byteorder, tif.is_bigtiff)
            drop = _associated_pages(tif, fmt)
            ifd_map: dict[int, int] = {}
            for page in tif.pages:
                index = page.index
                if index in drop:
                    report.removed_images.append(drop[index])
                    _wipe_page(fh, page, layout)
                    continue
                ifd_map[index] = len(ifd_map)
            kept = [p for p in tif.pages if p.index not in drop]
            for page in kept:
                _scrub_page(fh, page, layout, fmt, report, found, ifd_map)
            _relink(fh, tif, kept, layout)
            fh.flush()
            os.fsync(fh.fileno())
        _verify(tmp, fmt, found, report)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return report


# --- any format to DICOM-WSI -----------------------------------------------------------------


def _deid_to_dicom(
    src: Path, dst: Path, fmt: str, extra: set[str], uid_source: UidSource
) -> DeidReport:
    """De-identify in the source format where possible (TIFF family), convert the clean copy to
    DICOM-WSI without label/overview or confidential metadata, then scrub and verify the DICOM
    instances like any DICOM-WSI slide (searching for every identifier found on the way)."""
    work = Path(tempfile.mkdtemp(prefix=".deid-", dir=dst.parent))
    try:
        if fmt in SUFFIXES:
            first = _deid_tiff(src, work / f"slide{SUFFIXES[fmt]}", fmt, extra)
            clean, found, removed, scrubbed = (
                first.output,
                first.found,
                first.removed_images,
                first.scrubbed,
            )
        else:
            with open_slide(src) as slide:
                removed = sorted(ASSOCIATED.intersection(slide.associated_names))
                found = extra | _property_identifiers(slide.properties)
            clean, scrubbed = src, []
        dicom = work / "dicom"
        convert_to_dicom(clean, dicom, uid_source=uid_source, associated=False, confidential=False)
        report = _deid_dicom(dicom, dst, DICOM_WSI, found)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.source = src
    report.removed_images = sorted({*removed, *report.removed_images})
    report.scrubbed = [*scrubbed, *report.scrubbed]
    return report


def _property_identifiers(properties: Mapping[str, str]) -> set[str]:
    """Values of vendor properties whose names suggest identity (dates, names, barcodes, ...)."""
    found: set[str] = set()
    for key, value in properties.items():
        if not key.startswith("openslide.") and IDENTIFYING_KEY.search(key):
            _harvest(found, value)
    return found


def _associated_pages(tif: Any, fmt: str) -> dict[int, str]:
    """Top-level page index -> name, for label/macro pages to remove."""
    drop: dict[int, str] = {}
    if fmt == OME_TIFF:
        for series in tif.series[1:]:
            if series.name.lower() in ASSOCIATED:
                for page in series.pages:
                    drop[page.index] = series.name.lower()
        return drop
    for page in tif.pages:
        if page.is_tiled:
            continue
        desc = page.description or ""
        if fmt == "aperio":
            lines = desc.splitlines()
            word = lines[1].split(" ")[0].lower() if len(lines) > 1 else ""
        elif fmt == "hamamatsu":
            mag = page.tags.get(NDPI_MAGNIFICATION)
            word = "macro" if mag is not None and float(mag.value) == NDPI_MACRO else ""
        else:
            word = desc.split(" ")[0].lower()
        if word in ASSOCIATED:
            drop[page.index] = word
    return drop


def _wipe_page(fh: BinaryIO, page: Any, layout: _Layout) -> None:
    """Overwrite a page's image data, out-of-line tag values and IFD with zeros."""
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        _zero(fh, offset, count)
    for tag in page.tags.values():
        if tag.valueoffset != tag.offset + 4 + layout.count_size:
            _zero(fh, tag.valueoffset, tag.valuebytecount)
    n = len(page.tags)
    _zero(fh, page.offset, layout.header_size + n * layout.entry_size)


def _scrub_page(
    fh: BinaryIO,
    page: Any,
    layout: _Layout,
    fmt: str,
    report: DeidReport,
    found: set[str],
    ifd_map: dict[int, int],
) -> None:
    for tag in list(page.tags.values()):
        if tag.code in BLANK_TAGS:
            _harvest(found, tag.value)
            _zero(fh, tag.valueoffset, tag.valuebytecount)
            report.scrubbed.append(f"page {page.index}: {BLANK_TAGS[tag.code]}")
        elif tag.code == 270 and isinstance(tag.value, str):
            new = _scrub_description(tag.value, fmt, found, ifd_map)
            if new != tag.value:
                _write_ascii(fh, tag, new.encode(), layout)
                report.scrubbed.append(f"page {page.index}: ImageDescription")


def _scrub_description(desc: str, fmt: str, found: set[str], ifd_map: dict[int, int]) -> str:
    if fmt == "aperio" and desc.startswith("Aperio"):
        head, *fields = desc.split("|")
        kept = []
        for item in fields:
            key, _, value = item.partition("=")
            if key.strip() in APERIO_KEEP:
                kept.append(item)
            else:
                _harvest(found, value.strip())
        return "|".join([head, *kept])
    if fmt == OME_TIFF and desc.lstrip().startswith("<"):
        return _scrub_ome(desc, found, ifd_map)
    _harvest(found, desc)
    return ""


def _scrub_ome(xml: str, found: set[str], ifd_map: dict[int, int]) -> str:
    """Drop label/macro images and identifying elements; renumber TiffData IFDs."""
    root = ET.fromstring(xml)
    ns = root.tag[1 : root.tag.index("}")] if root.tag.startswith("{") else ""
    ET.register_namespace("", ns)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    for parent in list(root.iter()):
        for child in list(parent):
            local = child.tag.rsplit("}", 1)[-1]
            name = child.attrib.get("Name", "")
            if local == "Image" and name.lower() in ASSOCIATED:
                parent.remove(child)
            elif local in OME_DROP:
                _harvest(found, "".join(child.itertext()))
                parent.remove(child)
    for el in root.iter():
        for attr in ("Name", "SerialNumber", "LotNumber", "UserName", "Email"):
            if attr in el.attrib and not el.tag.endswith(("Channel", "Pixels")):
                _harvest(found, el.attrib[attr])
                del el.attrib[attr]
        if el.tag.endswith("TiffData") and "IFD" in el.attrib:
            el.attrib["IFD"] = str(ifd_map[int(el.attrib["IFD"])])
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


def _write_ascii(fh: BinaryIO, tag: Any, value: bytes, layout: _Layout) -> None:
    """Replace an ASCII tag value: in place if it fits, else appended at the end of the file."""
    data = value + b"\0"
    _zero(fh, tag.valueoffset, tag.valuebytecount)
    if len(data) <= tag.valuebytecount:
        fh.seek(tag.valueoffset)
        fh.write(data)
        return
    end = fh.seek(0, os.SEEK_END)
    end += end % 2
    fh.seek(end)
    fh.write(data)
    fh.seek(tag.offset + 4)
    fh.write(struct.pack(layout.offset_fmt, len(data)))
    fh.write(struct.pack(layout.offset_fmt, end))


def _relink(fh: BinaryIO, tif: Any, kept: list[Any], layout: _Layout) -> None:
    """Point each kept IFD's next-IFD field at the following kept IFD."""
    for page, nxt in zip(kept, [*kept[1:], None], strict=True):
        pos = page.offset + layout.header_size + len(page.tags) * layout.entry_size
        fh.seek(pos)
        fh.write(struct.pack(layout.offset_fmt, nxt.offset if nxt is not None else 0))


def _zero(fh: BinaryIO, offset: int, count: int) -> None:
    fh.seek(offset)
    fh.write(bytes(count))


def _harvest(found: set[str], value: object) -> None:
    """Remember identifying values (long enough to search for) to check the output against."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    for part in re.split(r"[\0\r\n|<>\"=]+", str(value)):
        part = part.strip()
        if len(part) >= MIN_IDENTIFIER and part.lower() not in PLACEHOLDERS:
            found.add(part)


# --- DICOM-WSI ---------------------------------------------------------------------------------


def _deid_dicom(src: Path, dst: Path, fmt: str, extra: set[str]) -> DeidReport:
    import pydicom

    report = DeidReport(source=src, output=dst, format=fmt)
    found = report.found
    found.update(extra)
    tmp = Path(tempfile.mkdtemp(prefix=".deid-", dir=dst.parent))
    try:
        files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
        written = 0
        for path in files:
            ds = pydicom.dcmread(path)
            kind = str(ds.ImageType[2]).upper() if len(ds.get("ImageType", [])) > 2 else ""
            if kind in ("LABEL", "OVERVIEW"):
                report.removed_images.append("label" if kind == "LABEL" else "macro")
                continue
            _scrub_dataset(ds, found, report)
            ds.remove_private_tags()
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = "oncofed wsi de-identification"
            out = tmp / f"{written:04d}.dcm"
            ds.save_as(out, enforce_file_format=True)
            with out.open("rb") as fh:
                os.fsync(fh.fileno())
            written += 1
        report.scrubbed = sorted(set(report.scrubbed))
        _verify(tmp, fmt, found, report)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _scrub_dataset(ds: Any, found: set[str], report: DeidReport) -> None:
    """Blank dates/times and names, replace identifiers, recursing into sequences."""
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _scrub_dataset(item, found, report)
        elif (elem.keyword in DICOM_REPLACE or elem.VR in ("DA", "DT", "TM", "PN")) and (
            elem.value not in (None, "")
        ):
            _harvest(found, elem.value)
            elem.value = "DEIDENTIFIED" if elem.VR in ("LO", "SH", "LT", "ST", "UT") else ""
            report.scrubbed.append(elem.keyword or str(elem.tag))


# --- verification --------------------------------------------------------------------------------


def _verify(path: Path, fmt: str, identifiers: set[str], report: DeidReport) -> None:
    """The output must read as a slide, have no label/macro, and contain no identifier bytes."""
    needles = sorted({i for i in identifiers if len(i) >= MIN_IDENTIFIER})
    report.identifiers_checked = len(needles)
    files = sorted(p for p in path.iterdir()) if path.is_dir() else [path]
    for file in files:
        hit = find_identifiers(file, needles)
        if hit:
            raise SlideDeidError(
                f"{report.source}: de-identified output still contains {len(hit)} identifier(s) "
                f"(e.g. at byte {hit[0][1]} of {file.name})"
            )
    with open_slide(path) as slide:
        left = ASSOCIATED.intersection(slide.associated_names)
        if left or slide.format != fmt:
            raise SlideDeidError(
                f"{report.source}: de-identified output still has {sorted(left)} images"
            )


def find_identifiers(path: Path, identifiers: Iterable[str]) -> list[tuple[str, int]]:
    """(identifier, byte offset) for each identifier found in the file, UTF-8 or UTF-16-LE,
    case-insensitive; streams the file in chunks."""
    needles = []
    for ident in identifiers:
        for enc in ("utf-8", "utf-16-le"):
            needles.append((ident, ident.lower().encode(enc)))
    if not needles:
        return []
    overlap = max(len(n) for _, n in needles)
    hits: list[tuple[str, int]] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        pos, tail = 0, b""
        while chunk := fh.read(SCAN_CHUNK):
            window = (tail + chunk).lower()
            base = pos - len(tail)
            for ident, needle in needles:
                at = window.find(needle)
                if at >= 0 and ident not in seen:
                    seen.add(ident)
                    hits.append((ident, base + at))
            pos += len(chunk)
            tail = window[-overlap:]
    return hits
