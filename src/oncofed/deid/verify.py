"""Verification: scan every output byte for the input's identifying values, in many encodings.

Each identifying value taken out of the input becomes a set of lower-cased byte patterns: the value
in ASCII/Latin-1, UTF-8, UTF-16 (both byte orders) and the input's own character set; name
components on their own; dates in the usual written forms. Hits are reported by attribute and byte
offset, never by value, so a report cannot leak what it found.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from pydicom.charset import encode_string

from oncofed.deid.dates import dates_in


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


hyperscan = _optional("hyperscan")
"""Intel Hyperscan (x86-64 wheels only): SIMD multi-literal matching, caseless without a lowered
copy; ~3 against ~33 ms on 16 MB of pixel data, but ~2 ms to compile the patterns."""
ahocorasick_rs = _optional("ahocorasick_rs")
"""Aho-Corasick in Rust with SIMD prefilters: ~10x pyahocorasick's speed over pixel data."""
ahocorasick = _optional("ahocorasick")
"""pyahocorasick; without either, the scan makes one ``bytes.find`` per pattern."""

# Shorter values match by chance in pixel data; all-digit values need more digits than that.
MIN_BYTES = 4
MIN_DIGITS = 6
DFA_BYTES = 1 << 20
"""Outputs from this size on are scanned with ahocorasick_rs's DFA (26 against 54 ms on 16 MB),
or with Hyperscan where installed (its compile time pays from ~1 MB on)."""
_SPLIT_NAME = re.compile(r"[\^=,\s]+")
_ENCODINGS = ("latin-1", "utf-8", "utf-16-le", "utf-16-be")


@dataclass(frozen=True)
class Hit:
    """One identifying value found in output bytes."""

    label: str
    offset: int
    encoding: str

    def __str__(self) -> str:
        return f"value of {self.label} found at byte {self.offset} ({self.encoding})"


def date_forms(date: str) -> list[str]:
    """Return common written forms of the YYYYMMDD ``date``."""
    y, m, d = date[:4], date[4:6], date[6:8]
    return [
        date,
        f"{y}-{m}-{d}",
        f"{y}/{m}/{d}",
        f"{y}.{m}.{d}",
        f"{m}/{d}/{y}",
        f"{d}/{m}/{y}",
        f"{d}.{m}.{y}",
        f"{d}-{m}-{y}",
    ]


def _long_enough(text: str) -> bool:
    size = len(text.encode("utf-8"))
    return size >= (MIN_DIGITS if text.isdigit() else MIN_BYTES)


class Needles:
    """The identifying values of one input: text (for redaction) and byte patterns (for scans)."""

    def __init__(self, charsets: Sequence[str], ignore: Iterable[str]) -> None:
        self._charsets = list(charsets)
        self._ignore = {text.lower() for text in ignore}
        self.texts: dict[str, str] = {}

    def add_text(self, label: str, text: str) -> None:
        """Add an identifying string (ID, address, UID...) if it is long enough to be specific."""
        text = text.strip()
        if _long_enough(text) and text.lower() not in self._ignore:
            self.texts.setdefault(text, label)

    def add_name(self, label: str, name: str) -> None:
        """Add a person name: the whole value and each component."""
        self.add_text(label, name.strip("^= "))
        for part in _SPLIT_NAME.split(name):
            self.add_text(label, part)

    def add_dates(self, label: str, value: str) -> None:
        """Add every date in a DA/DT value in its common written forms."""
        for date in dates_in(value):
            for form in date_forms(date):
                self.add_text(label, form)

    def patterns(self) -> dict[bytes, tuple[str, str]]:
        """Return lower-cased byte pattern -> (label, encoding) for every value and encoding."""
        found: dict[bytes, tuple[str, str]] = {}
        for text, label in self.texts.items():
            if text.isascii():
                # Case variants and Latin-1/UTF-8 all lower-case to the same bytes: one of each.
                found.setdefault(text.encode("latin-1").lower(), (label, "latin-1"))
                found.setdefault(text.encode("utf-16-le").lower(), (label, "utf-16-le"))
                found.setdefault(text.encode("utf-16-be").lower(), (label, "utf-16-be"))
                continue
            for variant in {text, text.upper(), text.lower()}:
                for encoding in _ENCODINGS:
                    try:
                        found.setdefault(variant.encode(encoding).lower(), (label, encoding))
                    except UnicodeEncodeError:
                        continue
                if self._charsets and not variant.isascii():
                    raw = encode_string(variant, self._charsets)
                    found.setdefault(raw.lower(), (label, "dataset character set"))
        return found


def scan(data: bytes, needles: Needles) -> list[Hit]:
    """Return every identifying value of ``needles`` that occurs anywhere in ``data``.

    Large outputs go through Hyperscan where installed; the others through one Aho-Corasick
    pass over the lower-cased bytes (ahocorasick_rs, else pyahocorasick) where one is
    installed, else one ``bytes.find`` per pattern. Each reports every pattern found at its
    first offset, in pattern order.
    """
    patterns = needles.patterns()
    if not patterns:
        return []
    if hyperscan is not None and len(data) >= DFA_BYTES:
        first = _first_offsets_hs(data, patterns)
    elif ahocorasick_rs is not None:
        first = _first_offsets_rs(data.lower(), patterns)
    elif ahocorasick is not None:
        first = _first_offsets(data.lower(), patterns)
    else:
        first = _first_offsets_find(data.lower(), patterns)
    return [Hit(patterns[p][0], offset, patterns[p][1]) for p, offset in first.items()]


def _first_offsets_find(data: bytes, patterns: dict[bytes, tuple[str, str]]) -> dict[bytes, int]:
    """Like :func:`_first_offsets` with one ``bytes.find`` per pattern."""
    offsets = {pattern: data.find(pattern) for pattern in patterns}
    return {pattern: offset for pattern, offset in offsets.items() if offset >= 0}


def _first_offsets_hs(data: bytes, patterns: dict[bytes, tuple[str, str]]) -> dict[bytes, int]:
    """Like :func:`_first_offsets` with Hyperscan, over ``data`` as it is (not lower-cased).

    Its caseless flag folds ASCII letters only, as ``bytes.lower`` does (the patterns are
    lower-cased); each literal is written as ``\\xNN`` escapes, since its literal compiler
    stops at a zero byte. One match per pattern: the first to end, so the first to start.
    """
    assert hyperscan is not None
    keys = list(patterns)
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[b"".join(b"\\x%02x" % byte for byte in key) for key in keys],
        ids=list(range(len(keys))),
        elements=len(keys),
        flags=hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH,
    )
    first: dict[int, int] = {}

    def matched(index: int, _start: int, end: int, _flags: int, _context: object) -> int:
        first[index] = end - len(keys[index])
        return 0  # go on scanning

    database.scan(data, match_event_handler=matched)
    return {keys[index]: first[index] for index in sorted(first)}


def _first_offsets_rs(data: bytes, patterns: dict[bytes, tuple[str, str]]) -> dict[bytes, int]:
    """Like :func:`_first_offsets` with ahocorasick_rs (bytes in, no GIL held while scanning)."""
    assert ahocorasick_rs is not None
    keys = list(patterns)
    # The default (a DFA) scans fastest but takes ~1 ms to build: worth it on large data only.
    quick = None if len(data) >= DFA_BYTES else ahocorasick_rs.Implementation.ContiguousNFA
    automaton = ahocorasick_rs.BytesAhoCorasick(keys, implementation=quick)
    first: dict[int, int] = {}
    for index, start, _ in automaton.find_matches_as_indexes(data, overlapping=True):
        first.setdefault(index, start)  # matches come in order of their end
    return {keys[index]: first[index] for index in sorted(first)}


def _first_offsets(data: bytes, patterns: dict[bytes, tuple[str, str]]) -> dict[bytes, int]:
    """Pattern -> offset of its first occurrence in ``data``, in the order of ``patterns``."""
    assert ahocorasick is not None
    automaton = ahocorasick.Automaton()
    for index, pattern in enumerate(patterns):
        # Latin-1 maps bytes 1:1 to code points, so str matching is byte matching.
        automaton.add_word(pattern.decode("latin-1"), index)
    automaton.make_automaton()
    first: dict[int, int] = {}
    keys = list(patterns)
    for end, index in automaton.iter(data.decode("latin-1")):
        if index not in first:
            first[index] = end - len(keys[index]) + 1
    return {keys[index]: first[index] for index in sorted(first)}
