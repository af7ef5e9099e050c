"""STOW-RS: a request's parts go through ``NodeService.receive`` (de-identification) together.

De-identification replaces UIDs, so the response names the *stored* UIDs: the ones QIDO and
WADO answer with, as the ingest reports them for each part.
"""

from __future__ import annotations

import io
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import pydicom

from oncofed.ingest.pipeline import Failure, StoreFailure
from oncofed.ingest.pipeline import Outcome as IngestOutcome
from oncofed.ingest.receive import Conflict
from oncofed.server.dicomweb_common import DICOM, DicomwebProblem, parse_media_type
from oncofed.server.dicomweb_multipart import Part, split
from oncofed.server.service import NodeService

BATCH_BYTES = 256 << 20
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
COERCED = 0xB000


@dataclass
class Outcome:
    """What became of one part."""

    sop_class: str | None
    sent_uid: str | None
    stored_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    failure: int | None = None
    reason: str = ""


@dataclass
class StowResult:
    """Per-part outcomes of one request."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def status(self) -> int:
        """200 all stored, 202 some failed, 409 none stored."""
        failed = sum(o.failure is not None for o in self.outcomes)
        return 200 if failed == 0 else 409 if failed == len(self.outcomes) else 202


def store(service: NodeService, body: IO[bytes], marker: str, actor: str) -> StowResult:
    """Split, ingest and account for every part of a spooled body."""
    body.seek(0, io.SEEK_END)
    if body.tell() == 0:
        raise DicomwebProblem(400, "malformed_multipart", "the request body is empty")
    with mmap.mmap(body.fileno(), 0, access=mmap.ACCESS_READ) as view:
        parts = split(view, marker)
        result = StowResult()
        for batch in _batches(parts):
            result.outcomes += _store_batch(service, view, batch, actor)
    return result


def _batches(parts: list[Part]) -> list[list[Part]]:
    batches: list[list[Part]] = [[]]
    size = 0
    for part in parts:
        if batches[-1] and size + part.end - part.start > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += part.end - part.start
    return [b for b in batches if b]


def _sent_ids(raw: bytes) -> tuple[str | None, str | None]:
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, force=True)
    except Exception:
        return None, None
    sop_class = str(ds.get("SOPClassUID", "") or "") or None
    sop_uid = str(ds.get("SOPInstanceUID", "") or "") or None
    return sop_class, sop_uid


def _store_batch(
    service: NodeService, view: mmap.mmap, batch: list[Part], actor: str
) -> list[Outcome]:
    """Ingest a batch's DICOM parts together; the sent UIDs are read only for failed parts
    (a stored part is answered with the UIDs it is stored under)."""
    outcomes: dict[int, Outcome] = {}
    payloads: list[tuple[int, str, bytes]] = []
    for part in batch:
        raw = view[part.start : part.end]
        if parse_media_type(part.content_type).type != DICOM:
            outcomes[part.index] = Outcome(*_sent_ids(raw), failure=CANNOT_UNDERSTAND)
            outcomes[part.index].reason = f"part is {part.content_type}, not {DICOM}"
            continue
        payloads.append((part.index, f"stow-part-{part.index + 1}", raw))
    if payloads:
        received = service.receive([(name, raw) for _, name, raw in payloads], actor=actor)
        for (index, _, raw), result in zip(payloads, received.outcomes, strict=True):
            outcomes[index] = _outcome(raw, result)
    return [outcomes[i] for i in sorted(outcomes)]


def _outcome(raw: bytes, result: IngestOutcome) -> Outcome:
    """A part's outcome from what the ingest did with it."""
    if not isinstance(result, Failure):
        return Outcome(result.sop_class, None, result.sop_uid, result.study_uid, result.series_uid)
    outcome = Outcome(*_sent_ids(raw), reason=result.reason)
    if isinstance(result, StoreFailure):
        outcome.failure = OUT_OF_RESOURCES
        outcome.reason = "the node's store could not take the instance"
    elif isinstance(result, Conflict):
        outcome.failure = DUPLICATE_SOP_INSTANCE
    else:
        outcome.failure = PROCESSING_FAILURE if outcome.sent_uid else CANNOT_UNDERSTAND
    return outcome


def response_json(result: StowResult, url_of: Callable[[Outcome], str]) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON."""
    stored, failed = [], []
    for o in result.outcomes:
        item: dict[str, Any] = {
            "00081150": _ui(o.sop_class),
            "00081155": _ui(o.stored_uid if o.failure is None else o.sent_uid),
        }
        if o.failure is None:
            item["00081190"] = {"vr": "UR", "Value": [url_of(o)]}
            item["00081196"] = {"vr": "US", "Value": [COERCED]}
            stored.append(item)
        else:
            item["00081197"] = {"vr": "US", "Value": [o.failure]}
            failed.append(item)
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in result.outcomes if o.failure is None}
    if len(studies) == 1:
        body["00081190"] = {
            "vr": "UR",
            "Value": [url_of(Outcome(None, None, study_uid=studies.pop()))],
        }
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    return body


def _ui(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}
