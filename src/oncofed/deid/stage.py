"""The de-identification stage: Part-10 bytes in, verified de-identified Part-10 bytes out.

parse (strictly) -> walk the profile -> clean pixels -> mark as de-identified -> encode -> scan the
output bytes for every identifying value of the input. Any failure raises QuarantineError naming the
source and the reason; nothing is returned half-done, so nothing half-done can be stored.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO

import pydicom
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.uid import UID

from oncofed.deid.dataset import Rejected, Walker, patient_identity
from oncofed.deid.encode import encode, file_meta
from oncofed.deid.keys import Keyring
from oncofed.deid.marks import marks
from oncofed.deid.pixels import clean_pixels, needs_cleaning
from oncofed.deid.profile import Profile, build_profile
from oncofed.deid.stream import deidentify
from oncofed.deid.verify import scan
from oncofed.errors import QuarantineError

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass
class Outcome:
    """What one input became: the output bytes and what was done to get them."""

    data: bytes
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    pseudonym: str
    actions: Counter[tuple[int, str]] = field(default_factory=Counter)
    pixels_masked: float = 0.0


def _reason(exc: BaseException) -> str:
    """An exception's message with quoted text (possibly a value from the file) blanked."""
    text = _QUOTED.sub("'…'", str(exc))[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parse(raw: bytes) -> Dataset:
    """Parse Part-10 bytes, refusing a transfer syntax that does not match the encoding."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(BytesIO(raw))
        except Exception as exc:
            raise Rejected(f"not a readable DICOM Part-10 file ({_reason(exc)})") from exc
    for warning in caught:
        message = str(warning.message)
        if "Expected explicit VR" in message or "Expected implicit VR" in message:
            raise Rejected("the data set is not encoded as its transfer syntax declares")
    _check_complete(ds)
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or not UID(ts).is_transfer_syntax:
        raise Rejected(f"unknown transfer syntax {ts}")
    if PIXEL_DATA in ds:
        _check_pixels(ds, UID(ts))
    return ds


def _check_complete(ds: Dataset) -> None:
    """Refuse a data set that ends early (pydicom stops quietly at the end of a short file)."""
    tags = list(ds.keys())
    if not tags:
        raise Rejected("truncated: no data set after the file meta information")
    last = ds.get_item(tags[-1])
    value = getattr(last, "value", None)
    length = getattr(last, "length", UNDEFINED_LENGTH)
    if isinstance(value, bytes) and length != UNDEFINED_LENGTH and len(value) < length:
        raise Rejected(f"truncated: the last element has {len(value)} of its {length} bytes")


def _check_pixels(ds: Dataset, ts: UID) -> None:
    """Refuse pixel data whose encapsulation or length contradicts the header."""
    raw = ds.get_item(PIXEL_DATA)
    encapsulated = raw.length == UNDEFINED_LENGTH if hasattr(raw, "length") else None
    if ts.is_encapsulated and encapsulated is False:
        raise Rejected(f"transfer syntax {ts.name} needs encapsulated pixel data; it is not")
    if ts.is_encapsulated or encapsulated:
        if not ts.is_encapsulated:
            raise Rejected(f"encapsulated pixel data under native transfer syntax {ts.name}")
        return
    try:
        bits = int(ds.BitsAllocated)
        count = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
        count *= int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise Rejected(f"pixel data without a valid image description ({_reason(exc)})") from exc
    expected = (count * bits + 7) // 8
    actual = len(raw.value or b"")
    if actual < expected:
        raise Rejected(f"pixel data truncated: {actual} bytes, the header implies {expected}")


def _mark(ds: Dataset, profile: Profile) -> None:
    """Record the de-identification in the data set."""
    for tag, vr, value in marks(profile):
        if tag in ds:
            ds[tag].value = value
        else:
            ds.add_new(tag, vr, value)


def _encode(ds: Dataset, ts: str) -> bytes:
    """Write ``ds`` as Part-10 with a fresh preamble and file meta."""
    return encode(ds, file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), ts))


@dataclass(frozen=True)
class DeidStage:
    """The DeidentifyStage of the ingest pipeline (picklable: a key and a plain profile)."""

    key: bytes
    profile: Profile = field(default_factory=build_profile)
    name: str = "deid-ps3.15-basic"

    def apply(self, raw: bytes, source: str) -> bytes:
        """Return de-identified, verified bytes for ``raw`` or raise QuarantineError."""
        return self.process(raw, source).data

    def clean(self, raw: bytes, source: str) -> tuple[bytes, Dataset]:
        """Like ``apply``, with the de-identified data set the bytes encode (not to be changed:
        the caller reads it instead of parsing the bytes again)."""
        outcome, ds = self._checked(raw, source)
        return outcome.data, ds

    def process(self, raw: bytes, source: str) -> Outcome:
        """Like ``apply`` but also return what was done (for reports and the catalog)."""
        return self._checked(raw, source)[0]

    def _checked(self, raw: bytes, source: str) -> tuple[Outcome, Dataset]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._process(raw)
        except Rejected as exc:
            raise QuarantineError(f"{source}: {exc}") from None
        except QuarantineError:
            raise
        except Exception as exc:
            raise QuarantineError(
                f"{source}: could not be de-identified ({_reason(exc)})"
            ) from None

    def _process(self, raw: bytes) -> tuple[Outcome, Dataset]:
        return self.from_bytes(raw) or self.through_pydicom(raw)

    def from_bytes(self, raw: bytes) -> tuple[Outcome, Dataset] | None:
        """The common case de-identified straight from the bytes (:mod:`oncofed.deid.stream`,
        ~4x quicker), the same output as :meth:`through_pydicom`; None for other inputs."""
        fast = deidentify(raw, self.profile, self.key)
        if fast is None:
            return None
        data, header, pseudonym, walker = fast
        return _outcome(data, header, pseudonym, walker), header

    def through_pydicom(self, raw: bytes) -> tuple[Outcome, Dataset]:
        """Any input de-identified through a pydicom data set (Rejected with the reason)."""
        ds = _parse(raw)
        for required in ("SOPClassUID", "SOPInstanceUID"):
            if not str(ds.get(required, "") or "").strip():
                raise Rejected(f"missing {required}")
        keyring = Keyring(self.key)
        identity = patient_identity(lambda keyword: str(ds.get(keyword, "") or ""))
        pseudonym = keyring.pseudonym(identity)
        charsets = convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
        walker = Walker(self.profile, keyring, pseudonym, keyring.day_offset(identity), charsets)
        walker.run(ds)
        masked = 0.0
        if needs_cleaning(ds):
            if "clean-pixel-data" in self.profile.options:
                masked = clean_pixels(ds)
            elif str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
                raise Rejected("burned-in annotation and the clean-pixel-data option is off")
        _mark(ds, self.profile)
        data = _encode(ds, str(ds.file_meta.TransferSyntaxUID))
        hits = scan(data, walker.needles)
        if hits:
            found = "; ".join(str(hit) for hit in hits[:5])
            raise Rejected(f"identifying values remain after de-identification: {found}")
        return _outcome(data, ds, pseudonym, walker, masked), ds


def _outcome(
    data: bytes, ds: Dataset, pseudonym: str, walker: Walker, masked: float = 0.0
) -> Outcome:
    """What an input became: ``data`` encoding ``ds``, de-identified by ``walker``."""
    return Outcome(
        data=data,
        sop_instance_uid=str(ds.SOPInstanceUID),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        pseudonym=pseudonym,
        actions=walker.actions,
        pixels_masked=masked,
    )


def make_stage(
    key: bytes, options: Iterable[str] = (), safe_private: Iterable[tuple[str, int, int]] = ()
) -> DeidStage:
    """Build a stage for ``key`` with the basic profile and ``options``."""
    return DeidStage(key=key, profile=build_profile("basic", options, safe_private))
