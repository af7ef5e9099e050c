"""The attributes QIDO-RS answers from the catalog, and how each is matched.

Every other attribute is read from a stored instance's header, and only when ``includefield``
asks for it (the catalog keeps what cohort search needs, not whole headers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from oncofed.server.dicomweb_common import DicomwebProblem


class Level(IntEnum):
    """The query/retrieve levels, outermost first."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3


@dataclass(frozen=True)
class Attr:
    """A catalog-backed attribute: where it lives and how it is matched.

    ``kind``: uid (list matching), date (range matching), text (wildcards), code (a CS value
    list), int (single value), or computed (an aggregate: returned, never matched).
    """

    keyword: str
    level: Level
    sql: str
    kind: str

    @property
    def tag(self) -> str:
        """The tag as eight hex digits."""
        return f"{tag_for_keyword(self.keyword):08X}"

    @property
    def vr(self) -> str:
        """The value representation from the data dictionary."""
        return str(dictionary_VR(self.keyword))


ATTRS: dict[str, Attr] = {
    a.keyword: a
    for a in (
        Attr("StudyInstanceUID", Level.STUDY, "st.study_uid", "uid"),
        Attr("StudyDate", Level.STUDY, "st.study_date", "date"),
        Attr("StudyDescription", Level.STUDY, "st.description", "text"),
        Attr("PatientID", Level.STUDY, "p.pseudo_id", "text"),
        Attr("PatientSex", Level.STUDY, "p.sex", "code"),
        Attr("ModalitiesInStudy", Level.STUDY, "list(DISTINCT s.modality)", "computed"),
        Attr("NumberOfStudyRelatedSeries", Level.STUDY, "count(DISTINCT s.series_key)", "computed"),
        Attr("NumberOfStudyRelatedInstances", Level.STUDY, "count(*)", "computed"),
        Attr("SeriesInstanceUID", Level.SERIES, "s.series_uid", "uid"),
        Attr("Modality", Level.SERIES, "s.modality", "code"),
        Attr("SeriesDescription", Level.SERIES, "s.description", "text"),
        Attr("BodyPartExamined", Level.SERIES, "s.body_part", "code"),
        Attr("Manufacturer", Level.SERIES, "s.manufacturer", "text"),
        Attr("ManufacturerModelName", Level.SERIES, "s.model", "text"),
        Attr("NumberOfSeriesRelatedInstances", Level.SERIES, "count(*)", "computed"),
        Attr("SOPInstanceUID", Level.INSTANCE, "i.sop_uid", "uid"),
        Attr("SOPClassUID", Level.INSTANCE, "i.sop_class", "uid"),
        Attr("Rows", Level.INSTANCE, "i.rows", "int"),
        Attr("Columns", Level.INSTANCE, "i.cols", "int"),
        Attr("NumberOfFrames", Level.INSTANCE, "i.frames", "int"),
    )
}

HEADER_DEFAULTS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "PatientName",
        "PatientBirthDate",
        "StudyID",
    ),
    Level.SERIES: ("SeriesNumber", "SeriesDate", "SeriesTime", "Laterality"),
    Level.INSTANCE: ("InstanceNumber", "BitsAllocated", "ContentDate", "ContentTime"),
}
"""Header attributes ``includefield=all`` adds per level (QIDO's default-return attributes)."""


def columns(level: Level) -> list[Attr]:
    """The catalog attributes a response at ``level`` carries."""
    return [
        a
        for a in ATTRS.values()
        if (a.kind != "computed" and a.level <= level)
        or (a.kind == "computed" and a.level == level)
    ]


def keyword_of(name: str) -> str:
    """A query key as a keyword (tags without one stay hex); 400 when it is neither."""
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return str(keyword_for_tag(int(text, 16))) or text.upper()
    if tag_for_keyword(text) is not None:
        return text
    raise DicomwebProblem(400, "invalid_attribute", f"not a DICOM attribute: {name!r}")
