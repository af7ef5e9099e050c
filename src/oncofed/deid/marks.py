"""The attributes that record a de-identification in the data set (PS3.15 E.1.1), the same for
both de-identification paths."""

from __future__ import annotations

import functools
from typing import Any

from pydicom.dataset import Dataset

from oncofed.deid.encode import freeze
from oncofed.deid.profile import Profile


@functools.lru_cache(maxsize=16)
def _method_codes(codes: tuple[tuple[str, str], ...]) -> list[Dataset]:
    """The De-identification Method Code Sequence items (built once, encoded once per syntax)."""
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(freeze(item))
    return items


def marks(profile: Profile) -> list[tuple[int, str, Any]]:
    """(tag, VR, value) of the attributes PS3.15 E.1.1 asks for to record the de-identification."""
    if "retain-modified-dates" in profile.options:
        dates = "MODIFIED"
    elif "retain-full-dates" in profile.options:
        dates = "UNMODIFIED"
    else:
        dates = "REMOVED"
    return [
        (0x00120062, "CS", "YES"),  # Patient Identity Removed
        (0x00120063, "LO", profile.method_description()),  # De-identification Method
        (0x00120064, "SQ", _method_codes(tuple(profile.codes()))),
        (0x00280303, "CS", dates),  # Longitudinal Temporal Information Modified
    ]
