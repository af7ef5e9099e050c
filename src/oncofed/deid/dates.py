"""Shifting DICOM DA and DT values by a whole number of days, so that intervals survive."""

from __future__ import annotations

import datetime
import re

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def _shift(ymd: tuple[int, int, int], days: int) -> datetime.date:
    return datetime.date(*ymd) + datetime.timedelta(days=days)


def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value or range (``A-B``); None if it is not a valid date."""
    parts = value.strip().split("-")
    if len(parts) > 2:
        return None
    out = []
    for part in parts:
        if part == "" and len(parts) == 2:
            out.append("")
            continue
        match = _DA.match(part)
        if not match:
            return None
        try:
            year, month, day = (int(g) for g in match.groups())
            moved = _shift((year, month, day), days)
        except ValueError:
            return None
        out.append(moved.strftime("%Y%m%d"))
    return "-".join(out)


def shift_dt(value: str, days: int) -> str | None:
    """Shift one DT value (time and UTC offset kept; a partial date shifts from its middle)."""
    value = value.strip()
    if "-" in value[:8] or len(value) < 4:
        return None
    match = _DT.match(value)
    if not match:
        return None
    year, month, day, rest = match.groups()
    if rest and (month is None or day is None):
        return None
    try:
        moved = _shift((int(year), int(month or 7), int(day or 1)), days)
    except ValueError:
        return None
    text = moved.strftime("%Y%m%d")
    return text[: 4 + (2 if month else 0) + (2 if day else 0)] + rest


def dates_in(value: str) -> list[str]:
    """Return the calendar dates (YYYYMMDD) found in a DA or DT value, for verification."""
    found = []
    for match in re.finditer(r"(?<!\d)(\d{4})(\d{2})(\d{2})", value):
        try:
            datetime.date(*(int(g) for g in match.groups()))
        except ValueError:
            continue
        found.append(match.group(0))
    return found
