"""Applying a profile to a parsed data set in place: one walk, nested sequences at any depth.

Untouched elements stay raw (never decoded), so pixel data and bulk values cost nothing. Every
identifying value taken out is recorded for verification; text to be cleaned is redacted after the
walk, when every identifier of the input is known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from oncofed.deid.dates import shift_da, shift_dt
from oncofed.deid.keys import Keyring
from oncofed.deid.profile import STUDY_DATE, Profile
from oncofed.deid.redact import Redactor
from oncofed.deid.verify import Needles

MAX_DEPTH = 32
MAX_ELEMENTS = 2_000_000
PRIVATE = -1  # action-count key for all private attributes together
PSEUDONYM_TAGS = frozenset({0x00100010, 0x00100020})
# Implicit VR files carry no VRs: the dictionary's (first choice where ambiguous) stands in.
DICT_VR = {tag: entry[0].split(" or ")[0] for tag, entry in DicomDictionary.items()}
_FAMILIES = (
    "AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT",
    "US SS UL SL FL FD AT UV SV",
    "OB OW OD OF OL OV",
    "SQ",
)
FAMILY = {vr: n for n, names in enumerate(_FAMILIES) for vr in names.split()}
DICT_FAMILY = {
    tag: FAMILY[entry[0]] for tag, entry in DicomDictionary.items() if entry[0] in FAMILY
}
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE", "UR"})
DUMMY_TEXT = "ANONYMIZED"
DUMMY_NAME = "ANONYMOUS"
DUMMIES: dict[str, Any] = {
    "PN": DUMMY_NAME,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "UR": "",
    **dict.fromkeys(("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"), 0),
    **dict.fromkeys(("OB", "OW", "OD", "OF", "OL", "OV", "UN"), b""),
}
# Placeholders that name no one; a kept attribute holding one must not quarantine a file.
PLACEHOLDERS = ("unknown", "none", "null", "anonymous", "anonymized", "not applicable", "removed")
IGNORED_VALUES = (
    DUMMY_TEXT,
    DUMMY_NAME,
    *PLACEHOLDERS,
    *(v for v in DUMMIES.values() if isinstance(v, str)),
)


class Rejected(Exception):
    """The input cannot be de-identified safely; the message is the reason (never a value)."""


def _texts(value: Any) -> list[str]:
    if value is None or isinstance(value, bytes | bytearray):
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None and str(v)]
    text = str(value)
    return [text] if text else []


def patient_identity(value: Callable[[str], str]) -> str:
    """The patient identity that pseudonym and date offset derive from; ``value(keyword)`` is
    an attribute's text as ``str(ds.get(keyword, "") or "")`` gives it."""
    patient_id = value("PatientID").strip()
    if patient_id:
        return f"id:{value('IssuerOfPatientID').strip()}:{patient_id}"
    name = value("PatientName").strip()
    if name:
        return f"name:{name}:{value('PatientBirthDate').strip()}"
    study = value("StudyInstanceUID").strip()
    if study:
        return f"study:{study}"
    raise Rejected("no Patient ID, Patient's Name or Study Instance UID to link the patient by")


def _joined(texts: list[str]) -> str | list[str] | None:
    """pydicom's value for ``texts``: one string, a list of several, None for none."""
    return texts if len(texts) > 1 else (texts[0] if texts else None)


def checked_vr(tag: int, vr: str | None) -> str:
    """An element's VR (the dictionary's when the file states none); Rejected if the stated
    one contradicts the dictionary (text vs number vs bulk)."""
    if vr is None:
        return DICT_VR.get(tag, "UN")
    expected = DICT_FAMILY.get(tag)
    if expected is not None and FAMILY.get(vr, expected) != expected:
        raise Rejected(f"{label_of(tag)} has VR {vr}, which the standard does not allow")
    return str(vr)


def label_of(tag: int) -> str:
    """Return ``(gggg,eeee) Keyword`` for a tag (``private attributes`` for PRIVATE)."""
    if tag == PRIVATE:
        return "private attributes"
    entry = DicomDictionary.get(tag)
    name = entry[4] if entry else "unknown"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {name}"


class Walker:
    """De-identifies one data set in place and records what it did and what it removed."""

    def __init__(
        self, profile: Profile, keyring: Keyring, pseudonym: str, offset: int, charsets: list[str]
    ) -> None:
        self.profile = profile
        self.keyring = keyring
        self.pseudonym = pseudonym
        self.offset = offset
        self.actions: Counter[tuple[int, str]] = Counter()
        self.needles = Needles(charsets, (*IGNORED_VALUES, pseudonym))
        self.date_blanked = 0
        self._to_clean: list[tuple[Dataset, int]] = []
        self._elements = 0

    def run(self, ds: Dataset) -> None:
        """Walk ``ds`` (top level), then clean collected text with every identifier known."""
        self._walk(ds, 0)
        if self._to_clean:
            redact = self.redactor()
            for item, tag in self._to_clean:
                elem = item[tag]
                elem.value = _joined([redact(text) for text in _texts(elem.value)])

    def redactor(self) -> Redactor:
        """Cleans collected text once every identifier of the input is known."""
        return Redactor(self.needles.texts)

    def _walk(self, ds: Dataset, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Rejected(f"sequences nested deeper than {MAX_DEPTH} levels")
        tags = list(ds.keys())
        self._elements += len(tags)
        if self._elements > MAX_ELEMENTS:
            raise Rejected(f"more than {MAX_ELEMENTS} data elements")
        private: list[int] = []
        profile = self.profile
        for tag in tags:
            t = int(tag)
            if t & 0x10000:
                private.append(t)
                continue
            if t & 0xFFFF == 0:
                del ds[tag]
                continue
            action = profile.action(t)
            if action is None:
                self._unlisted(ds, t, depth)
            else:
                self.actions[(t, action)] += 1
                self._apply(ds, t, action, depth)
        if private:
            self._private(ds, private, depth)

    def _vr(self, ds: Dataset, tag: int) -> str:
        return checked_vr(tag, ds.get_item(tag).VR)

    def _recurse(self, ds: Dataset, tag: int, depth: int) -> None:
        for item in ds[tag].value or ():
            self._walk(item, depth + 1)

    def _unlisted(self, ds: Dataset, tag: int, depth: int) -> None:
        vr = self._vr(ds, tag)
        if vr == "SQ":
            self._recurse(ds, tag, depth)
            return
        action = self.unlisted_action(vr)
        if action is not None:
            self.actions[(tag, action)] += 1
            self._apply(ds, tag, action, depth)

    def unlisted_action(self, vr: str) -> str | None:
        """The action for an attribute the profile does not list (None: kept as it is)."""
        if vr in ("DA", "DT", "PN", "UN"):
            return {"PN": "D", "UN": "X"}.get(vr, self.profile.actions[STUDY_DATE])
        return None

    def collect(self, tag: int, texts: list[str], vr: str, action: str) -> None:
        """Record the identifying values among ``texts`` (an element's) for verification."""
        if vr == "PN":
            for text in texts:
                self.needles.add_name(label_of(tag), text)
        elif vr in ("DA", "DT"):
            for text in texts:
                self.needles.add_dates(label_of(tag), text)
        elif (vr == "UI" and action == "U") or (tag in self.profile.identifying and vr in TEXT_VRS):
            for text in texts:
                self.needles.add_text(label_of(tag), text)

    def _apply(self, ds: Dataset, tag: int, action: str, depth: int) -> None:
        vr = self._vr(ds, tag)
        if vr == "SQ":
            if action == "X":
                del ds[tag]
            elif action == "Z":
                ds[tag].value = Sequence()
            else:
                self._recurse(ds, tag, depth)
            return
        if action == "K":
            return  # kept as read: never decoded
        elem = ds[tag]  # decoded once, for the values to verify and to change
        texts = _texts(elem.value)
        self.collect(tag, texts, vr, action)
        if action == "X":
            del ds[tag]
        elif action == "C" and vr in TEXT_VRS:
            self._to_clean.append((ds, tag))
        elif action in ("Z", "D", "U") or (action == "C" and vr in ("DA", "DT")):
            elem.value = self.changed(tag, vr, action, texts)

    def changed(self, tag: int, vr: str, action: str, texts: list[str]) -> Any:
        """The new value of an element under a Z, D, U action, or C on a date (its ``texts``
        as read); None for an empty one."""
        if tag in PSEUDONYM_TAGS and action in ("Z", "D"):
            return self.pseudonym
        if action == "Z" or (action == "U" and vr != "UI"):
            return None
        if vr == "UI":  # D or U
            return _joined([self.keyring.uid(text.strip("\0 ")) for text in texts])
        if action == "D":
            return DUMMIES.get(vr, DUMMY_TEXT)
        shift = shift_da if vr == "DA" else shift_dt  # C on a date
        moved = [shift(text, self.offset) for text in texts]
        if any(m is None for m in moved):
            self.date_blanked += 1
            return None
        return _joined([m for m in moved if m is not None])

    def _private(self, ds: Dataset, tags: list[int], depth: int) -> None:
        """Remove private elements, except listed safe ones (with their creator) under the option.

        An element (gggg,bbee) belongs to the block whose creator is (gggg,00bb); it is safe when
        that creator, gggg and ee are listed (PS3.15 Table E.3.10-1 or the operator's list) and the
        VR the file states, if any, is the listed one. A kept sequence is walked like any other.
        """
        keep: set[int] = set()
        if self.profile.keep_private:
            for tag in tags:
                element = tag & 0xFFFF
                if element < 0x1000:
                    continue
                creator_tag = (tag & 0xFFFF0000) | (element >> 8)
                if creator_tag not in ds:
                    continue
                name = str(ds[creator_tag].value or "").strip()
                vr = ds.get_item(tag).VR
                if not self.profile.is_safe_private(name, tag >> 16, element, vr):
                    continue
                if self.profile.safe_private_vr(name, tag >> 16, element) == "SQ":
                    if ds[tag].VR != "SQ":
                        continue  # listed as a sequence but not readable as one: not kept
                    self._recurse(ds, tag, depth)
                keep.update((tag, creator_tag))
        for tag in tags:
            if tag not in keep:
                del ds[tag]
                self.actions[(PRIVATE, "X")] += 1
            else:
                self.actions[(PRIVATE, "K")] += 1
