"""Profiles: the Basic Application Level Confidentiality Profile plus options -> one action per tag.

Resolved actions are single letters: X remove, Z empty, D dummy, K keep, C clean (dates shifted,
text redacted, sequences cleaned item by item), U replace UIDs. Combined codes of Table E.1-1
resolve to the member that keeps every IOD conformant without knowing the attribute's type:
X/Z -> Z; X/D, Z/D and X/Z/D -> D; X/Z/U* -> U (a sequence whose UIDs are replaced).

Where the standard keeps what is not listed, oncofed is stricter (see docs/deidentification.md):
unlisted dates follow Study Date, unlisted person names get D, unlisted instance and frame of
reference UIDs get U, and Text Value (0040,A160), common in structured reports, is cleaned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom._dicom_dict import DicomDictionary

from oncofed.deid.annex_e_table import EDITION, EXACT, MASKED, PRIVATE
from oncofed.deid.safe_private_table import SAFE_PRIVATE
from oncofed.errors import ConfigError

# Option name -> DICOM code value (CID 7050); the options oncofed implements.
OPTION_CODES: dict[str, tuple[str, str]] = {
    "retain-safe-private": ("113111", "Retain Safe Private Option"),
    "retain-uids": ("113110", "Retain UIDs Option"),
    "retain-device-identity": ("113109", "Retain Device Identity Option"),
    "retain-institution-identity": ("113112", "Retain Institution Identity Option"),
    "retain-patient-characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain-full-dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain-modified-dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "clean-descriptors": ("113105", "Clean Descriptors Option"),
    "clean-structured-content": ("113104", "Clean Structured Content Option"),
    "clean-pixel-data": ("113101", "Clean Pixel Data Option"),
}
BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
ALIASES = {
    "retain-dates": "retain-modified-dates",
    "retain-patient-chars": "retain-patient-characteristics",
    "retain-device-id": "retain-device-identity",
    "retain-institution-id": "retain-institution-identity",
}
# What a node applies when a collection does not say otherwise.
DEFAULT_OPTIONS = (
    "retain-modified-dates",
    "retain-patient-characteristics",
    "clean-descriptors",
    "clean-structured-content",
    "clean-pixel-data",
)
RESOLVE = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}
STUDY_DATE = 0x00080020
TEXT_VALUE = 0x0040A160
_EXTRA_UID = re.compile(r"(InstanceUID|FrameOfReferenceUID|ConcatenationSource)$")
# Listed attributes whose values identify someone (besides every PN, DA, DT and mapped UI value).
_IDENTIFYING_NAME = re.compile(
    r"\b(ID|IDs|Identifier|Number|Name|Names|Address|Telephone|Telephone Numbers|Issuer|"
    r"Institution|Station|Physician|Operator|Occupation|Country|Region|Branch|Email)\b",
    re.IGNORECASE,
)


class ProfileError(ConfigError):
    """A profile or option name is unknown, or options contradict each other."""

    code = "deid_profile_error"


@dataclass(frozen=True)
class Profile:
    """Effective de-identification rules; plain data so that stages holding it pickle cheaply."""

    options: tuple[str, ...]
    actions: dict[int, str]
    masked: tuple[tuple[int, int, str], ...]
    identifying: frozenset[int]
    keep_private: bool
    # (private creator, group, element offset in the block) -> VR it must have ("" for any)
    safe_private: dict[tuple[str, int, int], str]

    def action(self, tag: int) -> str | None:
        """Return the action for a public ``tag``, or None where the profile keeps it as is."""
        found = self.actions.get(tag)
        if found is None and (tag >> 24) in (0x50, 0x60):
            for mask, value, code in self.masked:
                if tag & mask == value:
                    return code
        return found

    def safe_private_vr(self, creator: str, group: int, element: int) -> str | None:
        """The listed VR ("" for any) if (``creator``, ``group``, low byte of ``element``) may
        stay, else None (always None without the Retain Safe Private option)."""
        if not self.keep_private:
            return None
        return self.safe_private.get((creator, group, element & 0xFF))

    def is_safe_private(
        self, creator: str, group: int, element: int, vr: str | None = None
    ) -> bool:
        """True if the private element may stay: listed, and ``vr`` (when the file states one
        other than UN) is the listed VR."""
        listed = self.safe_private_vr(creator, group, element)
        if listed is None:
            return False
        return not listed or vr in (None, "UN") or vr == listed

    def method_description(self) -> str:
        """Return the De-identification Method text (LO, at most 64 characters)."""
        return f"oncofed PS3.15 {EDITION} E.1-1 basic+{len(self.options)} options"[:64]

    def codes(self) -> list[tuple[str, str]]:
        """Return (code value, meaning) for the profile and each option, in CID 7050 terms."""
        return [BASIC_CODE, *(OPTION_CODES[name] for name in self.options)]


def _pick(basic: str, columns: dict[str, str], options: frozenset[str]) -> str:
    """Return the resolved action: an active option's code (C wins over K), else the basic one."""
    chosen = [code for column, code in columns.items() if column in options]
    code = "C" if "C" in chosen else chosen[0] if chosen else basic
    return RESOLVE.get(code, code)


def normalise_options(names: Iterable[str]) -> tuple[str, ...]:
    """Return canonical option names in a stable order; raise ProfileError for unknown ones."""
    chosen: set[str] = set()
    for name in names:
        canonical = ALIASES.get(name, name)
        if canonical not in OPTION_CODES:
            valid = ", ".join(sorted([*OPTION_CODES, *ALIASES]))
            raise ProfileError(f"unknown de-identification option {name!r}; valid: {valid}")
        chosen.add(canonical)
    if {"retain-full-dates", "retain-modified-dates"} <= chosen:
        raise ProfileError("options retain-full-dates and retain-modified-dates exclude each other")
    return tuple(name for name in OPTION_CODES if name in chosen)


def build_profile(
    name: str = "basic",
    options: Iterable[str] = (),
    safe_private: Iterable[tuple[str, int, int]] = (),
) -> Profile:
    """Build the effective profile ``name`` (only ``basic`` exists) with ``options``."""
    if name != "basic":
        raise ProfileError(f"unknown de-identification profile {name!r}; valid: basic")
    chosen = normalise_options(options)
    active = frozenset(chosen)
    actions = {tag: _pick(rule[1], rule[2], active) for tag, rule in EXACT.items()}
    identifying = {tag for tag, rule in EXACT.items() if _IDENTIFYING_NAME.search(rule[0])}
    date_action = actions[STUDY_DATE]
    for tag, entry in DicomDictionary.items():
        if tag in actions or tag >> 16 == 0x0002:
            continue
        vr, keyword = entry[0], entry[4]
        if vr in ("DA", "DT"):
            actions[tag] = date_action
        elif vr == "PN":
            actions[tag] = "D"
        elif vr == "UI" and _EXTRA_UID.search(keyword) and "retain-uids" not in active:
            actions[tag] = "U"
    actions[TEXT_VALUE] = "C"
    masked = tuple((mask, value, _pick(r[1], r[2], active)) for mask, value, r in MASKED)
    return Profile(
        options=chosen,
        actions=actions,
        masked=masked,
        identifying=frozenset(identifying),
        keep_private=PRIVATE[2].get("retain-safe-private") is not None
        and "retain-safe-private" in active,
        safe_private=_safe_private(safe_private) if "retain-safe-private" in active else {},
    )


def _safe_private(extra: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
    """PS3.15 Table E.3.10-1 (its K rows) plus the operator's own safe private attributes."""
    found = {(c, g, e): vr for c, g, e, vr, _vm, action in SAFE_PRIVATE if action == "K"}
    for creator, group, element in extra:
        found.setdefault((creator.strip(), group, element & 0xFF), "")
    return found
