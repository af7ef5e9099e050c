"""OpenAPI descriptions of the DICOMweb routes, whose query keys FastAPI cannot see.

QIDO-RS routes read their matching keys from the raw query string (any attribute keyword or tag
may be sent), so the keys the catalog answers are described here from ``dicomweb_attrs``.
"""

from __future__ import annotations

from typing import Any

from oncofed.server.dicomweb_attrs import ATTRS, Level
from oncofed.server.dicomweb_common import DICOM_JSON

_MATCHING = {
    "uid": "UID list matching: one UID, or several separated by commas or backslashes",
    "date": "single value or range matching: YYYYMMDD, YYYYMMDD-, -YYYYMMDD, YYYYMMDD-YYYYMMDD",
    "text": "single value matching with the wildcards * and ?",
    "code": "one code string, or several separated by commas or backslashes",
    "int": "single value matching (a non-negative integer)",
}
_CONTROL: tuple[dict[str, Any], ...] = (
    {
        "name": "limit",
        "in": "query",
        "description": "At most this many results (capped at 10,000).",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "offset",
        "in": "query",
        "description": "Skip this many results.",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "includefield",
        "in": "query",
        "description": "Extra attributes to return (keywords or tags, comma separated), or 'all'.",
        "schema": {"type": "string"},
    },
    {
        "name": "fuzzymatching",
        "in": "query",
        "description": "Accepted and ignored: matching is exact (a warning header says so).",
        "schema": {"type": "boolean"},
    },
)
_PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}


def qido_openapi(level: Level, fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` for a QIDO-RS route returning ``level`` records; ``fixed`` are the keys
    the path already sets."""
    keys = [
        {
            "name": attr.keyword,
            "in": "query",
            "description": f"{attr.keyword} ({attr.tag}): {_MATCHING[attr.kind]}.",
            "schema": {"type": "string"},
        }
        for attr in ATTRS.values()
        if attr.level <= level and attr.kind != "computed" and attr.keyword not in fixed
    ]
    return {
        "parameters": [*keys, *_CONTROL],
        "responses": {
            "200": {
                "description": "Matching records as a DICOM JSON array",
                "content": {DICOM_JSON: {"schema": {"type": "array", "items": {"type": "object"}}}},
            },
            "204": {"description": "No match"},
            "400": {"description": "Malformed query", "content": _PROBLEM},
        },
    }
