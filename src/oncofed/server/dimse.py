"""The node's DICOM network service (DIMSE SCP), built on pynetdicom.

C-ECHO; C-STORE, where every received object goes through the node's de-identification and
is acknowledged once its blob is durable (the catalog rows follow in batches; each association
gets one ingest report and audit entry, written before its release is answered); C-FIND at
patient, study, series and image level (Patient Root and Study Root); C-GET and C-MOVE of
stored, de-identified instances. Only configured peers may associate, each from its configured
host, and only they are C-MOVE destinations.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_context,
    evt,
)
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from oncofed.closing import Closing
from oncofed.deid.encode import part10_head
from oncofed.errors import ConfigError, OncofedError
from oncofed.ingest.pipeline import Failure, StoreFailure
from oncofed.ingest.receive import Conflict, ReceiveSession
from oncofed.server.dimse_keys import DimseFailure, Level
from oncofed.server.dimse_query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    Query,
    Stored,
    find,
    parse,
    responses,
    to_retrieve,
)
from oncofed.server.service import NodeService

log = logging.getLogger(__name__)

SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
"""C-STORE answer for an object de-identification quarantined (or could not parse)."""
CANCEL = 0xFE00
PENDING = 0xFF00

VERIFICATION = UID("1.2.840.10008.1.1")
_PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1"
_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2"
FIND_MODELS = {UID(f"{_PATIENT_ROOT}.1"): PATIENT_ROOT, UID(f"{_STUDY_ROOT}.1"): STUDY_ROOT}
MOVE_MODELS = {UID(f"{_PATIENT_ROOT}.2"): PATIENT_ROOT, UID(f"{_STUDY_ROOT}.2"): STUDY_ROOT}
GET_MODELS = {UID(f"{_PATIENT_ROOT}.3"): PATIENT_ROOT, UID(f"{_STUDY_ROOT}.3"): STUDY_ROOT}
"""Query/Retrieve information models (Patient Root, Study Root) and the levels each allows."""
MAX_CONTEXTS = 128
MAX_PDU = 4 << 20
"""Largest PDU the SCP takes (pynetdicom's default, 16 kB, costs a Python loop per 16 kB)."""
CONNECT_TIMEOUT_S = 10
"""How long a C-MOVE waits to connect to its destination."""

Peers = Mapping[str, tuple[str, int]]
"""Peer AE title → (host, port): who may associate, from where, and where C-MOVE sends."""

Responses = Iterator[tuple[int | Dataset, Dataset | None]]


def parse_peer(text: str) -> tuple[str, tuple[str, int]]:
    """``AET=host:port`` → (AE title, (host, port)), e.g. for a repeatable CLI option."""
    aet, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not (aet.strip() and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"a DICOM peer is AET=host:port, not {text!r}")
    return _check_aet(aet.strip()), (host, int(port))


def _check_aet(aet: str) -> str:
    if not 0 < len(aet) <= 16 or not aet.isascii() or not aet.isprintable() or "\\" in aet:
        raise ConfigError(f"not a valid AE title (1-16 printable ASCII characters): {aet!r}")
    return aet


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


def _levels(event: Event, models: Mapping[UID, tuple[Level, ...]]) -> tuple[Level, ...]:
    return models[UID(str(event.request.AffectedSOPClassUID))]


def _part10(event: Event) -> bytes:
    """The received data set as a Part-10 file. The head is written here: pynetdicom's
    ``encoded_dataset()`` builds the same file meta through pydicom, ~0.4 ms an instance."""
    request = cast(C_STORE, event.request)
    head = part10_head(
        str(request.AffectedSOPClassUID),
        str(request.AffectedSOPInstanceUID),
        str(event.context.transfer_syntax),
    )
    return head + event.encoded_dataset(include_meta=False)


def _caller(event: Event) -> str:
    return f"dimse:{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"


class DimseServer(Closing):
    """A DIMSE SCP for a served node: ``start()`` listens in the background, ``stop()`` ends."""

    def __init__(
        self,
        service: NodeService,
        *,
        peers: Peers,
        ae_title: str = "ONCOFED",
        host: str = "127.0.0.1",
        port: int = 11112,
        collection: str | None = None,
    ) -> None:
        self.service = service
        self.ae_title = _check_aet(ae_title)
        self.host, self.port = host, port
        self.peers = {_check_aet(aet): address for aet, address in peers.items()}
        self.collection = collection
        self._allowed = {aet: _addresses(host) for aet, (host, _) in self.peers.items()}
        self._ae: AE | None = None
        self._received = itertools.count(1)
        self._sessions: dict[Association, ReceiveSession] = {}
        self._sessions_lock = threading.Lock()

    def start(self) -> None:
        """Listen on ``host:port`` (port 0: any free port, then stored in ``port``)."""
        if self._ae is not None:
            return
        # pynetdicom's standard handlers format every PDU and DIMSE message for its log, logged
        # or not (~1 ms of CPU a C-STORE); oncofed logs and audits what it does itself.
        pynetdicom_config.LOG_HANDLER_LEVEL = "none"
        ae = self._application_entity()
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_ACSE_RECV, self._on_acse),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        assert isinstance(server, ThreadedAssociationServer)
        self.port = int(server.server_address[1])
        self._ae = ae
        log.info("DIMSE SCP %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Abort open associations and stop listening."""
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None

    def close(self) -> None:
        """Same as ``stop()``."""
        self.stop()

    def _application_entity(self) -> AE:
        ae = AE(self.ae_title)
        ae.maximum_pdu_size = MAX_PDU
        ae.require_calling_aet = list(self.peers)
        ae.connection_timeout = CONNECT_TIMEOUT_S
        ae.add_supported_context(VERIFICATION)
        for model in (*FIND_MODELS, *GET_MODELS, *MOVE_MODELS):
            ae.add_supported_context(model)
        for context in AllStoragePresentationContexts:  # C-STORE in, and out for C-GET
            syntax = context.abstract_syntax
            assert syntax is not None
            ae.add_supported_context(syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        return ae

    def _on_requested(self, event: Event) -> None:
        """Reject callers that are not configured peers, or call from another host."""
        requestor = event.assoc.requestor
        aet = requestor.primitive.calling_ae_title.strip() if requestor.primitive else ""
        if requestor.address in self._allowed.get(aet, set()):
            return
        try:  # audited before the caller learns of the rejection
            log.warning("DIMSE: rejected association from %r at %s", aet, requestor.address)
            details: dict[str, object] = {"calling_ae_title": aet, "address": requestor.address}
            self.service.audit(f"dimse:{aet}", "dimse.reject", f"dimse/{self.ae_title}", details)
        finally:
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent: calling AE unknown
            event.assoc.kill()  # lets the reject go out before the socket closes

    def _on_store(self, event: Event) -> int | Dataset:
        name = f"C-STORE #{next(self._received)} from {_caller(event)}"
        try:
            outcome = self._session(event).accept(name, _part10(event))
        except OncofedError as exc:
            log.error("%s: %s", name, exc.message)
            return _status(OUT_OF_RESOURCES, f"not stored ({exc.code})")
        if isinstance(outcome, StoreFailure):
            return _status(OUT_OF_RESOURCES, "the node's store could not take the instance")
        if isinstance(outcome, Conflict):
            return _status(DUPLICATE_SOP_INSTANCE, "SOP Instance already stored, other content")
        if isinstance(outcome, Failure):
            return _status(CANNOT_UNDERSTAND, outcome.reason.removeprefix(f"{name}: "))
        return SUCCESS

    def _session(self, event: Event) -> ReceiveSession:
        """The association's receive session (made on its first C-STORE)."""
        with self._sessions_lock:
            session = self._sessions.get(event.assoc)
        if session is None:
            session = self.service.receiving(self.collection, actor=_caller(event))
            with self._sessions_lock:
                self._sessions[event.assoc] = session
        return session

    def _on_acse(self, event: Event) -> None:
        """On a release request, catalogue the association's instances before answering it
        (pynetdicom calls this in the association's thread, before it sends the response)."""
        primitive = event.primitive  # type: ignore[attr-defined]
        if isinstance(primitive, A_RELEASE) and primitive.result is None:
            self._finish(event.assoc)

    def _on_closed(self, event: Event) -> None:
        """Aborted or dropped associations: catalogue what they sent all the same."""
        self._finish(event.assoc)

    def _finish(self, assoc: Association) -> None:
        with self._sessions_lock:
            session = self._sessions.pop(assoc, None)
        if session is None:
            return
        try:
            self.service.finish(session)
        except OncofedError as exc:
            log.error("DIMSE association from %s: %s", session.actor, exc.message)

    def _on_find(self, event: Event) -> Responses:
        try:
            query = parse(event.identifier, _levels(event, FIND_MODELS))
            with self.service.connection() as con:
                matches = find(con, query)
        except DimseFailure as exc:
            yield _status(exc.status, exc.comment), None
            return
        self._audit(event, "dimse.find", query, {"matches": len(matches)})
        for answer in responses(query, matches, self.service.blob_path, self.ae_title):
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer

    def _on_get(self, event: Event) -> Iterator[Any]:
        try:
            stored = self._retrieve(event, GET_MODELS, "dimse.get")
        except DimseFailure as exc:
            yield 1
            yield _status(exc.status, exc.comment), None
            return
        yield len(stored)
        yield from self._send(event, stored)

    def _on_move(self, event: Event) -> Iterator[Any]:
        destination = (event.move_destination or "").strip()
        if destination not in self.peers:
            log.warning(
                "DIMSE: C-MOVE to unknown destination %r from %s", destination, _caller(event)
            )
            yield None, None  # pynetdicom answers 0xA801, move destination unknown
            return
        failure: DimseFailure | None = None
        try:
            stored = self._retrieve(event, MOVE_MODELS, "dimse.move", destination=destination)
        except DimseFailure as exc:
            stored, failure = [], exc
        yield (*self.peers[destination], {"contexts": _contexts(stored)})
        if failure is not None:
            yield 1
            yield _status(failure.status, failure.comment), None
            return
        yield len(stored)
        yield from self._send(event, stored)

    def _retrieve(
        self, event: Event, models: Mapping[UID, tuple[Level, ...]], action: str, **details: object
    ) -> list[Stored]:
        query = parse(event.identifier, _levels(event, models))
        with self.service.connection() as con:
            stored = to_retrieve(con, query)
        self._audit(event, action, query, {**details, "instances": len(stored)})
        return stored

    def _send(self, event: Event, stored: list[Stored]) -> Responses:
        for item in stored:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, dcmread(self.service.blob_path(item.sha256))

    def _audit(self, event: Event, action: str, query: Query, details: dict[str, object]) -> None:
        target = f"dimse/{query.level.name.lower()}"
        self.service.audit(_caller(event), action, target, details)


def _addresses(host: str) -> set[str]:
    """The IP addresses ``host`` stands for (a peer must call from one of them)."""
    try:
        return {host} | {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise ConfigError(f"cannot resolve DICOM peer host {host!r}: {exc}") from exc


def _contexts(stored: list[Stored]) -> list[PresentationContext]:
    """Contexts for C-MOVE sub-operations: each SOP class, as stored or uncompressed."""
    syntaxes: dict[str, dict[str, None]] = {}
    for item in stored:
        wanted = (item.transfer_syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        syntaxes.setdefault(item.sop_class, {}).update(dict.fromkeys(t for t in wanted if t))
    items = list(syntaxes.items())[:MAX_CONTEXTS] or [(VERIFICATION, {})]
    return [build_context(sop_class, list(ts) or None) for sop_class, ts in items]
