"""De-identification straight from the bytes: the common case without a pydicom data set.

The pydicom path (:mod:`oncofed.deid.stage`) parses a data set, decodes what it touches through
pydicom and writes it out again: ~2.5 ms for a 10 kB instance, most of it pydicom's bookkeeping
per element. This walk reads element headers from the bytes, copies kept elements as they are and
encodes only what changes, with the same rules (:class:`oncofed.deid.dataset.Walker` decides every
action, value and identifier to verify). Written here because no library de-identifies at the
byte level with PS3.15 rules; pydicom is the reference it is tested against.

It takes the common case only: a Part-10 file in a little-endian Explicit or Implicit VR transfer
syntax (native or encapsulated pixel data), ASCII values, one character set, no retained private
attributes, no pixel cleaning, no VR it would have to guess. Anything else is declined (``None``)
and goes the pydicom way, which also explains every rejection. Its output is byte-for-byte the
pydicom path's; tests compare both on every generated cohort, corpus and pydicom test file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.tag import BaseTag
from pydicom.uid import UID

from oncofed.deid.dataset import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    PRIVATE,
    TEXT_VRS,
    Rejected,
    Walker,
    checked_vr,
    patient_identity,
)
from oncofed.deid.encode import _write_dataset, part10_head
from oncofed.deid.keys import Keyring
from oncofed.deid.marks import marks
from oncofed.deid.pixels import SECONDARY_CAPTURE
from oncofed.deid.profile import Profile
from oncofed.deid.raw_elements import (
    ALL_VRS,
    BULK_VRS,
    ITEM_HEADER,
    PIXEL_DATA,
    STRINGS,
    U16,
    UNDEFINED,
    Declined,
    Element,
    Out,
    Reader,
    Value,
    ascii_text,
    decoded,
    dictionary_vr,
    element_bytes,
    encoded,
    read_file_meta,
)
from oncofed.deid.verify import scan

CHARSET, BITS_ALLOCATED, ROWS, COLUMNS = 0x00080005, 0x00280100, 0x00280010, 0x00280011
SAMPLES, FRAMES, BURNED_IN, MODALITY = 0x00280002, 0x00280008, 0x00280301, 0x00080060
SOP_CLASS, SOP_INSTANCE, STUDY_UID = 0x00080016, 0x00080018, 0x0020000D
PATIENT_ID, ISSUER, PATIENT_NAME, BIRTH_DATE = 0x00100020, 0x00100021, 0x00100010, 0x00100030
KEYWORDS = {
    "PatientID": PATIENT_ID, "IssuerOfPatientID": ISSUER, "PatientName": PATIENT_NAME,
    "PatientBirthDate": BIRTH_DATE, "StudyInstanceUID": STUDY_UID,
}  # fmt: skip
READ_BY_PYDICOM_PATH = frozenset(
    {CHARSET, BITS_ALLOCATED, ROWS, COLUMNS, SAMPLES, FRAMES, BURNED_IN, MODALITY, SOP_CLASS}
    | {SOP_INSTANCE, PATIENT_ID, ISSUER, PATIENT_NAME, BIRTH_DATE, STUDY_UID}
)
"""Kept attributes the pydicom path decodes (and so writes from their values): kept as they are
here only when the bytes are what pydicom would write."""
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
METHOD_CODES = 0x00120064


@dataclass(frozen=True)
class _Text:
    """A text element whose cleaned value is known once the walk has seen every identifier."""

    tag: int
    vr: str
    texts: list[str]


@dataclass
class _Sequence:
    tag: int
    undefined: bool
    items: list[tuple[list[Node], bool]] = field(default_factory=list)


Node = Out | _Text | _Sequence


def _as_written(element: Element, vr: str) -> Value:
    """A kept element's bytes if pydicom would write them unchanged after decoding them."""
    texts = decoded(vr, element.value)
    if texts is None:
        return element.value
    if vr not in TEXT_VRS and vr not in STRINGS and vr != "UI":
        raise Declined(f"rewriting VR {vr}")
    if encoded(vr, texts if len(texts) > 1 else (texts[0] if texts else None)) != element.value:
        raise Declined("value not as pydicom writes it")
    return element.value


class _Walk:
    """One input's walk: the Walker's rules over elements read from the bytes."""

    def __init__(self, walker: Walker, implicit: bool) -> None:
        self.walker = walker
        self.profile = walker.profile
        self.implicit = implicit
        self.elements = 0

    def dataset(self, elements: list[Element], depth: int) -> list[Node]:
        if depth > MAX_DEPTH:
            raise Declined("nested too deep")
        self.elements += len(elements)
        if self.elements > MAX_ELEMENTS:
            raise Declined("too many elements")
        out: list[Node] = []
        actions = self.walker.actions
        for element in elements:
            tag = element.tag
            if tag & 0x10000:
                if self.profile.keep_private:
                    raise Declined("safe private attributes kept")
                actions[(PRIVATE, "X")] += 1
                continue
            if tag & 0xFFFF == 0:
                continue  # group lengths are not written
            if tag >> 16 in (0, 2) or (tag == CHARSET and depth > 0):
                raise Declined("command or file meta elements, or a nested character set")
            vr = checked_vr(tag, element.vr)
            action = self.profile.action(tag)
            if action is not None:
                actions[(tag, action)] += 1
            elif vr == "SQ":
                action = "K"
            else:
                action = self.walker.unlisted_action(vr)
                if action is None:
                    out.append(_kept(element, vr))
                    continue
                actions[(tag, action)] += 1
            out += self._apply(element, vr, action, depth)
        return out

    def _apply(self, element: Element, vr: str, action: str, depth: int) -> list[Node]:
        tag = element.tag
        if vr == "SQ":
            if action == "X":
                return []
            sequence = _Sequence(tag, element.undefined)
            if action != "Z":
                for elements, undefined in element.items or ():
                    sequence.items.append((self.dataset(elements, depth + 1), undefined))
            return [sequence]
        if action == "K":
            return [_kept(element, vr)]
        if element.undefined:
            raise Declined("changing encapsulated pixel data")
        texts = decoded(vr, element.value) or []
        self.walker.collect(tag, texts, vr, action)
        if action == "X":
            return []
        if self.implicit and " or " in (dictionary_vr(tag) or ""):
            raise Declined("ambiguous VR")
        if action == "C" and vr in TEXT_VRS:
            if vr == "UR":
                raise Declined("cleaning a URI")
            return [_Text(tag, vr, texts)]
        if action in ("Z", "D", "U") or (action == "C" and vr in ("DA", "DT")):
            value = self.walker.changed(tag, vr, action, texts)
            return [Out(tag, vr, encoded(vr, value))]
        return [_kept(element, vr, read=True)]  # decoded, then written as it was


def _kept(element: Element, vr: str, *, read: bool = False) -> Out:
    """A kept element; ``read``: the pydicom path decoded it (and writes its value)."""
    if (read or element.tag in READ_BY_PYDICOM_PATH) and vr not in BULK_VRS:
        return Out(element.tag, vr, _as_written(element, vr))
    return Out(element.tag, vr, element.value, element.undefined)


def _outputs(nodes: list[Node], implicit: bool, redact: Callable[[str], str]) -> list[Out]:
    """The nodes of one data set as output elements (texts cleaned, sequences encoded)."""
    out = []
    for node in nodes:
        if isinstance(node, _Text):
            cleaned = [redact(text) for text in node.texts]
            value = cleaned if len(cleaned) > 1 else (cleaned[0] if cleaned else None)
            out.append(Out(node.tag, node.vr, encoded(node.vr, value)))
        elif isinstance(node, _Sequence):
            body = bytearray()
            for item, undefined in node.items:
                elements = _outputs(item, implicit, redact)
                content = b"".join(
                    chain.from_iterable(element_bytes(o, implicit) for o in elements)
                )
                body += ITEM_HEADER.pack(0xFFFE, 0xE000, UNDEFINED if undefined else len(content))
                body += content
                if undefined:
                    body += ITEM_HEADER.pack(0xFFFE, 0xE00D, 0)
            out.append(Out(node.tag, "SQ", bytes(body), node.undefined))
        else:
            out.append(node)
    return out


def _implicit(syntax: str, raw: bytes, start: int) -> bool:
    """Whether the data set is Implicit VR; Declined for syntaxes outside the common case
    and for a data set that is not encoded as its syntax says (pydicom would guess)."""
    uid = UID(syntax)
    if syntax not in (_EXPLICIT_LE, _IMPLICIT_LE) and not (
        uid.is_encapsulated and uid.is_little_endian and not uid.is_implicit_VR
    ):
        raise Declined(f"transfer syntax {syntax}")
    implicit = syntax == _IMPLICIT_LE
    if (raw[start + 4 : start + 6] in ALL_VRS) == implicit:
        raise Declined("data set encoded otherwise than its transfer syntax says")
    return implicit


def _text(top: dict[int, Element], tag: int, implicit: bool) -> str:
    """A top-level value as ``str(ds.get(keyword, "") or "")`` gives it in the pydicom path."""
    element = top.get(tag)
    if element is None:
        return ""
    vr = element.vr if not implicit else dictionary_vr(tag)
    texts = decoded(vr or "UN", element.value) or []
    if len(texts) > 1:
        raise Declined("several values")
    return texts[0] if texts else ""


def _number(top: dict[int, Element], tag: int, implicit: bool) -> int:
    element = top.get(tag)
    if element is None:
        raise Declined("image description missing")
    if (element.vr or dictionary_vr(tag)) == "US":
        if len(element.value) != 2:
            raise Declined("image description not one number")
        return int(U16.unpack(element.value)[0])
    return int(_text(top, tag, implicit) or 1)


def _check_pixels(top: dict[int, Element], syntax: str, implicit: bool) -> None:
    """Declined where the pydicom path rejects or cleans the pixel data."""
    pixels = top.get(PIXEL_DATA)
    if pixels is None:
        return
    if UID(syntax).is_encapsulated != pixels.undefined:
        raise Declined("encapsulation contradicts the transfer syntax")
    if (
        _text(top, BURNED_IN, implicit).upper() == "YES"
        or _text(top, MODALITY, implicit).upper() == "US"
        or _text(top, SOP_CLASS, implicit) in SECONDARY_CAPTURE
    ):
        raise Declined("pixel data that may carry burned-in text")
    if pixels.undefined:
        return
    count = _number(top, ROWS, implicit) * _number(top, COLUMNS, implicit)
    count *= _number(top, SAMPLES, implicit) if SAMPLES in top else 1
    count *= _number(top, FRAMES, implicit) if FRAMES in top else 1
    if len(pixels.value) < (count * _number(top, BITS_ALLOCATED, implicit) + 7) // 8:
        raise Declined("pixel data shorter than its description")


def _code_sequence(items: list[Dataset], implicit: bool, charset: Any) -> Out:
    """The De-identification Method Code Sequence as the pydicom path writes it."""
    body = bytearray()
    for item in items:
        buffer = DicomBytesIO()
        buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
        _write_dataset(buffer, item, charset)
        content = buffer.getvalue()
        body += ITEM_HEADER.pack(0xFFFE, 0xE000, len(content)) + content
    return Out(METHOD_CODES, "SQ", bytes(body))


Result = tuple[bytes, Dataset, str, Walker]
"""(output, its header as a data set, pseudonym, the walk's record)."""


def deidentify(raw: bytes, profile: Profile, key: bytes) -> Result | None:
    """The byte walk's :data:`Result` for ``raw``; None where the input is outside the common
    case (or fails a check): the pydicom path takes it then."""
    try:
        return _deidentify(raw, profile, key)
    except (Declined, Rejected, struct.error, ValueError, IndexError, KeyError):
        return None


def _deidentify(raw: bytes, profile: Profile, key: bytes) -> Result:
    meta, start = read_file_meta(raw)
    syntax = str(meta.get("TransferSyntaxUID") or "")
    implicit = _implicit(syntax, raw, start)
    elements, _ = Reader(raw, implicit).dataset(start, len(raw))
    top = {element.tag: element for element in elements}
    _check_pixels(top, syntax, implicit)
    if not (_text(top, SOP_CLASS, implicit).strip() and _text(top, SOP_INSTANCE, implicit).strip()):
        raise Declined("SOP class or instance UID missing")
    keyring = Keyring(key)
    identity = patient_identity(lambda keyword: _text(top, KEYWORDS[keyword], implicit))
    pseudonym = keyring.pseudonym(identity)
    charset: Any = None
    if CHARSET in top:
        values = ascii_text(top[CHARSET].value).rstrip("\0 ").split("\\")
        charset = values if len(values) > 1 else values[0]
    charsets = convert_encodings(charset or "ISO_IR 6")
    walker = Walker(profile, keyring, pseudonym, keyring.day_offset(identity), charsets)
    nodes = _Walk(walker, implicit).dataset(elements, 0)
    added: dict[int, Node] = {}
    for tag, vr, value in marks(profile):
        present = top.get(tag)
        if present is not None and (present.vr not in (None, vr) or present.undefined):
            raise Declined("a de-identification mark present in another form")
        if vr == "SQ":
            added[tag] = _code_sequence(value, implicit, charset or "iso8859")
        else:
            added[tag] = Out(tag, vr, encoded(vr, value))
    nodes = sorted([n for n in nodes if n.tag not in added] + list(added.values()), key=_tag_of)
    outputs = _outputs(nodes, implicit, walker.redactor())
    written = {o.tag: o for o in outputs}
    sop_class = ascii_text(written[SOP_CLASS].value).rstrip("\0 ")
    sop_uid = ascii_text(written[SOP_INSTANCE].value).rstrip("\0 ")
    head = part10_head(sop_class, sop_uid, syntax)
    data = b"".join([head, *chain.from_iterable(element_bytes(o, implicit) for o in outputs)])
    if scan(data, walker.needles):
        raise Declined("identifying values remain; the pydicom path says which")
    header = Dataset({BaseTag(o.tag): _raw(o, implicit) for o in outputs})
    header.file_meta = read_file_meta(head)[0]
    header.set_original_encoding(implicit, True, charset)
    return data, header, pseudonym, walker


def _raw(element: Out, implicit: bool) -> RawDataElement:
    """An output element as pydicom reads it (a large value stays a view: pydicom keeps raw
    bulk values as they are, and copying the pixel data for the header would cost ~5 ms)."""
    value = cast(bytes, element.value)
    vr = None if implicit else element.vr
    return RawDataElement(BaseTag(element.tag), vr, len(value), value, 0, implicit, True)


def _tag_of(node: Node) -> int:
    return node.tag
