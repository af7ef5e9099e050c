"""The de-identification stage of the ingest pipeline: raw input bytes in, storable bytes out.

Every ingest path (folder, C-STORE, STOW-RS) calls exactly one stage between parsing and storing.
Stages run inside worker processes, so implementations must be picklable (plain attributes only).
"""

from __future__ import annotations

from typing import Protocol

from pydicom.dataset import Dataset


class DeidentifyStage(Protocol):
    """Turns the raw Part-10 bytes of one input into the bytes that may enter the store."""

    @property
    def name(self) -> str:
        """A short name of the stage, recorded in ingest reports."""
        ...

    def apply(self, raw: bytes, source: str) -> bytes:
        """Return storable bytes for ``raw`` (read from ``source``) or raise QuarantineError."""
        ...

    def clean(self, raw: bytes, source: str) -> tuple[bytes, Dataset | None]:
        """Like ``apply``, with the whole data set the bytes encode where the stage parsed it
        (None: the caller parses the bytes)."""
        ...


class DeclaredDeidentified:
    """Stores bytes unchanged: only for collections explicitly declared already de-identified."""

    name = "declared-deidentified"

    def apply(self, raw: bytes, source: str) -> bytes:
        return raw

    def clean(self, raw: bytes, source: str) -> tuple[bytes, Dataset | None]:
        return raw, None
