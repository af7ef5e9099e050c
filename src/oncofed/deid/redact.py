"""Cleaning free text (the C action on descriptors and structured content): redact, don't drop.

Text keeps its clinical words; anything equal to one of the input's identifying values, and anything
shaped like a date, a long number, an e-mail address or a telephone number, becomes ``*``.

One regular expression does the work: the identifiers (longest first) then the shapes, so that the
leftmost, longest identifier wins. Compiling an expression with every identifier of the input cost
more than the rest of de-identification together, so each text is matched against only the
identifiers that can occur in it (a case-insensitive substring pre-check that never drops one the
expression could match) and the few distinct expressions that result come from ``re``'s cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PATTERNS = (
    r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b",  # written dates
    r"\d{5,}",  # long numbers: IDs, accession numbers, compact dates
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail addresses
    r"\+?\(?\d{2,4}\)?[ -]\d{3,4}[ -]\d{3,4}",  # telephone numbers
)
MASK = "*"
_SHAPES = "|".join(PATTERNS)


class Redactor:
    """Replaces identifying values and identifier-shaped text in strings."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        words = sorted({w for w in identifiers if w}, key=len, reverse=True)
        # (word, lower-cased ASCII word or None where the word is not ASCII)
        self._words = [(w, w.lower() if w.isascii() else None) for w in words]

    def _candidates(self, text: str) -> list[str]:
        """The identifiers that ``re.IGNORECASE`` could match somewhere in ``text``.

        Between ASCII strings a case-insensitive match is a substring of the lower-cased text; a
        non-ASCII word or text (where Unicode case folding has special cases such as the Kelvin
        sign or the long s) is always kept.
        """
        if not text.isascii():
            return [word for word, _ in self._words]
        lowered = text.lower()
        return [word for word, low in self._words if low is None or low in lowered]

    def __call__(self, text: str) -> str:
        """Return ``text`` with every identifier replaced by ``*``."""
        alternatives = [re.escape(w) for w in self._candidates(text)]
        pattern = "|".join([*alternatives, _SHAPES])
        return re.sub(pattern, MASK, text, flags=re.IGNORECASE)
