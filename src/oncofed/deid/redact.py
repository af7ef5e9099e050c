"""Cleaning free text (the C action on descriptors and structured content): redact, don't drop.

Text keeps its clinical words; anything equal to one of the input's identifying values, and anything
shaped like a date, a long number, an e-mail address or a telephone number, becomes ``*``.
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


class Redactor:
    """Replaces identifying values and identifier-shaped text in strings."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        words = sorted({w for w in identifiers if w}, key=len, reverse=True)
        alternatives = [re.escape(w) for w in words] + list(PATTERNS)
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every identifier replaced by ``*``."""
        return self._pattern.sub(MASK, text)
