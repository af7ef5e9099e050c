"""DICOMweb (PS3.18) for the node: QIDO-RS, WADO-RS and STOW-RS over the catalog and store.

Mounted at ``/dicomweb``. Everything served is what the node stored: de-identified instances
with de-identified UIDs. Errors are RFC 9457 problem details.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydicom.datadict import tag_for_keyword
from starlette.concurrency import run_in_threadpool

from oncofed.access.policy import TIER_TRANSFER, Principal, Scope
from oncofed.server.auth import Caller, Service, require_scope
from oncofed.server.dicomweb_attrs import Level
from oncofed.server.dicomweb_common import (
    DICOM,
    DICOM_JSON,
    MULTIPART,
    OCTET_STREAM,
    DicomwebProblem,
    Located,
    ProblemRoute,
    accepted,
    base_url,
    boundary,
    check_uid,
    locate,
    multipart_body,
    multipart_part_types,
    multipart_stream,
    visible_located,
)
from oncofed.server.dicomweb_frames import (
    bytes_of_frame,
    check_frames,
    choose_frame_media,
    open_pixels,
    parse_frame_list,
    part_type,
)
from oncofed.server.dicomweb_json import bulk_element, dataset_json, read_header
from oncofed.server.dicomweb_multipart import boundary_of, coalesce, max_upload, spool
from oncofed.server.dicomweb_openapi import qido_openapi
from oncofed.server.dicomweb_qido import Search, parse_search, run, to_json
from oncofed.server.dicomweb_render import choose_type, parse_options, render
from oncofed.server.dicomweb_stow import Outcome, response_json, store
from oncofed.server.dicomweb_wado import (
    META_BYTES,
    choose_syntax,
    instance_part,
    instance_url,
    metadata,
    stored_syntax,
    syntax_in,
)
from oncofed.server.service import NodeService

_JSON_TYPES = (DICOM_JSON, "application/json")
INLINE_BYTES = 4 << 20
"""Instances retrieved together up to this size are read whole and sent in one body."""
_STUDY = ("StudyInstanceUID",)
_SERIES = ("StudyInstanceUID", "SeriesInstanceUID")


def make_router() -> APIRouter:
    """The DICOMweb router (mount it at ``/dicomweb``)."""
    router = APIRouter(route_class=ProblemRoute)

    @router.get("", name="dicomweb_root")
    def root() -> dict[str, Any]:  # no data: open to anyone
        """What this DICOMweb service offers."""
        return {"services": ["QIDO-RS", "WADO-RS", "STOW-RS"], "studies": "studies"}

    _qido_routes(router)
    _wado_routes(router)

    @router.post("/studies")
    async def stow(request: Request, node: Service, caller: Caller) -> Response:
        """STOW-RS: store instances (each de-identified on the way in)."""
        require_scope(caller, Scope.WRITE_INGEST)
        marker = boundary_of(request.headers.get("content-type"))
        body = await spool(request, max_upload(request), node.node.store.tmp)
        try:
            result = await run_in_threadpool(store, node, body, marker, caller.user_id)
        finally:
            body.close()
        base = base_url(request)

        def url_of(o: Outcome) -> str:
            if o.stored_uid is None:
                return f"{base}/studies/{o.study_uid}"
            return f"{base}/studies/{o.study_uid}/series/{o.series_uid}/instances/{o.stored_uid}"

        content = response_json(result, url_of)
        return JSONResponse(content, status_code=result.status, media_type=DICOM_JSON)

    return router


def _qido_routes(router: APIRouter) -> None:
    @router.get("/studies", openapi_extra=qido_openapi(Level.STUDY))
    def studies(request: Request, node: Service, caller: Caller) -> Response:
        """QIDO-RS: search for studies."""
        return _search(request, node, caller, Level.STUDY, {})

    @router.get("/series", openapi_extra=qido_openapi(Level.SERIES))
    def all_series(request: Request, node: Service, caller: Caller) -> Response:
        """QIDO-RS: search for series."""
        return _search(request, node, caller, Level.SERIES, {})

    @router.get("/instances", openapi_extra=qido_openapi(Level.INSTANCE))
    def all_instances(request: Request, node: Service, caller: Caller) -> Response:
        """QIDO-RS: search for instances."""
        return _search(request, node, caller, Level.INSTANCE, {})

    @router.get("/studies/{study}/series", openapi_extra=qido_openapi(Level.SERIES, _STUDY))
    def study_series(study: str, request: Request, node: Service, caller: Caller) -> Response:
        """QIDO-RS: search for series of a study."""
        return _search(request, node, caller, Level.SERIES, {"StudyInstanceUID": study})

    @router.get("/studies/{study}/instances", openapi_extra=qido_openapi(Level.INSTANCE, _STUDY))
    def study_instances(study: str, request: Request, node: Service, caller: Caller) -> Response:
        """QIDO-RS: search for instances of a study."""
        return _search(request, node, caller, Level.INSTANCE, {"StudyInstanceUID": study})

    @router.get(
        "/studies/{study}/series/{series}/instances",
        openapi_extra=qido_openapi(Level.INSTANCE, _SERIES),
    )
    def series_instances(
        study: str, series: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """QIDO-RS: search for instances of a series."""
        fixed = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
        return _search(request, node, caller, Level.INSTANCE, fixed)


def _search(
    request: Request, node: NodeService, caller: Principal, level: Level, fixed: dict[str, str]
) -> Response:
    if not any(m.matches(t) for m in accepted(request) for t in _JSON_TYPES):
        raise DicomwebProblem(406, "not_acceptable", f"QIDO-RS answers {DICOM_JSON}")
    search = parse_search(level, request.query_params.multi_items(), fixed)
    search.collections = _visible(caller)
    with node.connection() as con:
        matches, more = run(con, search)
    node.audit_read(
        caller.user_id,
        "read",
        f"dicomweb/search/{level.name.lower()}",
        {"query": dict(request.query_params.multi_items()), "matches": len(matches)},
    )
    base = base_url(request)
    results = []
    for match in matches:
        item = to_json(match, level, lambda v: _level_url(base, level, v))
        for key, value in _header_fields(node, search, match.sha256, item, base).items():
            item.setdefault(key, value)
        results.append(item)
    warnings = search.warnings + (["There are additional results that match the query"] * more)
    headers = {"Warning": ", ".join(f'299 oncofed "{w}"' for w in warnings)} if warnings else {}
    return JSONResponse(results, media_type=DICOM_JSON, headers=headers)


def _level_url(base: str, level: Level, values: dict[str, Any]) -> str:
    url = f"{base}/studies/{values['StudyInstanceUID']}"
    if level >= Level.SERIES:
        url += f"/series/{values['SeriesInstanceUID']}"
    if level >= Level.INSTANCE:
        url += f"/instances/{values['SOPInstanceUID']}"
    return url


def _header_fields(
    node: NodeService, search: Search, sha256: str, item: dict[str, Any], base: str
) -> dict[str, Any]:
    """Attributes asked for by includefield that only the stored header holds."""
    path = node.blob_path(sha256)
    if search.include_all and search.level == Level.INSTANCE:
        study, series, sop = (item[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        url = f"{base}/studies/{study}/series/{series}/instances/{sop}"
        return dataset_json(read_header(path), lambda p: f"{url}/bulkdata/{p}")
    fields = search.header_fields()
    if not fields:
        return {}
    tags = [_tag(name) for name in fields]
    found = dataset_json(read_header(path, tags), None)
    wanted = {f"{tag:08X}" for tag in tags}
    return {key: value for key, value in found.items() if key in wanted}


def _tag(name: str) -> int:
    if len(name) == 8 and all(c in "0123456789ABCDEF" for c in name):
        return int(name, 16)
    return int(tag_for_keyword(name) or 0)


def _wado_routes(router: APIRouter) -> None:
    instance_path = "/studies/{study}/series/{series}/instances/{sop}"

    @router.get("/studies/{study}")
    def study(study: str, request: Request, node: Service, caller: Caller) -> Response:
        """WADO-RS: every instance of a study."""
        return _instances(request, node, _locate(node, caller, study))

    @router.get("/studies/{study}/series/{series}")
    def series(
        study: str, series: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """WADO-RS: every instance of a series."""
        return _instances(request, node, _locate(node, caller, study, series))

    @router.get(instance_path)
    def instance(
        study: str, series: str, sop: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """WADO-RS: one instance."""
        return _instances(request, node, _locate(node, caller, study, series, sop))

    @router.get("/studies/{study}/metadata")
    def study_metadata(study: str, request: Request, node: Service, caller: Caller) -> Response:
        """WADO-RS: metadata of every instance of a study."""
        return _metadata(request, node, _locate(node, caller, study))

    @router.get("/studies/{study}/series/{series}/metadata")
    def series_metadata(
        study: str, series: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """WADO-RS: metadata of every instance of a series."""
        return _metadata(request, node, _locate(node, caller, study, series))

    @router.get(instance_path + "/metadata")
    def instance_metadata(
        study: str, series: str, sop: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """WADO-RS: metadata of one instance."""
        return _metadata(request, node, _locate(node, caller, study, series, sop))

    @router.get(instance_path + "/frames/{frames}")
    def frames(
        study: str,
        series: str,
        sop: str,
        frames: str,
        request: Request,
        node: Service,
        caller: Caller,
    ) -> Response:
        """WADO-RS: frames (native as octet-stream; compressed as stored, or decoded)."""
        (item,) = _locate(node, caller, study, series, sop)
        return _frames(request, node, item, parse_frame_list(frames))

    @router.get(instance_path + "/rendered")
    def rendered(
        study: str, series: str, sop: str, request: Request, node: Service, caller: Caller
    ) -> Response:
        """WADO-RS: the first frame rendered as JPEG or PNG."""
        (item,) = _locate(node, caller, study, series, sop)
        return _rendered(request, node, item, 1)

    @router.get(instance_path + "/frames/{frames}/rendered")
    def rendered_frame(
        study: str,
        series: str,
        sop: str,
        frames: str,
        request: Request,
        node: Service,
        caller: Caller,
    ) -> Response:
        """WADO-RS: one frame rendered as JPEG or PNG."""
        (item,) = _locate(node, caller, study, series, sop)
        return _rendered(request, node, item, parse_frame_list(frames)[0])

    @router.get(instance_path + "/bulkdata/{tag_path:path}")
    def bulkdata(
        study: str,
        series: str,
        sop: str,
        tag_path: str,
        request: Request,
        node: Service,
        caller: Caller,
    ) -> Response:
        """WADO-RS: one bulk data value (Pixel Data: every frame)."""
        (item,) = _locate(node, caller, study, series, sop)
        if tag_path.strip("/").upper() == "7FE00010":
            count = open_pixels(node.blob_path(item.sha256)).frames
            return _frames(request, node, item, list(range(1, count + 1)))
        element = bulk_element(read_header(node.blob_path(item.sha256)), tag_path)
        value = element.value if isinstance(element.value, bytes) else b""
        marker = boundary()
        parts = [(OCTET_STREAM, lambda: iter([value]))]
        return StreamingResponse(
            multipart_stream(parts, marker),
            media_type=f'{MULTIPART}; type="{OCTET_STREAM}"; boundary={marker}',
        )


def _visible(caller: Principal) -> list[str] | None:
    """Collections whose images may leave to ``caller`` (None: all, for the node's stewards)."""
    require_scope(caller, Scope.READ_IMAGES)
    if caller.is_steward:
        return None
    return sorted(c for c, tier in caller.grants.items() if tier >= TIER_TRANSFER)


def _locate(
    node: NodeService,
    caller: Principal,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> list[Located]:
    for uid, name in ((study, "StudyInstanceUID"), (series, "SeriesInstanceUID"), (sop, "SOP")):
        if uid is not None:
            check_uid(uid, name)
    collections = _visible(caller)

    def query() -> list[tuple[Any, ...]]:
        with node.connection() as con:
            return locate(con, study, series, sop)

    target = "/".join(uid for uid in (study, series, sop) if uid)
    found = visible_located(
        node.reads.get(("locate", study, series, sop), query), target, collections
    )
    node.audit_read(caller.user_id, "read", f"dicomweb/{target}", {"instances": len(found)})
    return found


def _instances(request: Request, node: NodeService, items: list[Located]) -> Response:
    """The instances as one multipart body: read whole and sent in one body when together
    under ``INLINE_BYTES`` and sent as stored (a streamed response costs a task and a thread
    hop per chunk, ~1 ms a request), else streamed."""
    ranges = multipart_part_types(request, DICOM)
    paths = [node.blob_path(item.sha256) for item in items]
    marker = boundary()
    media_type = f'{MULTIPART}; type="{DICOM}"; boundary={marker}'
    if sum(item.size for item in items) <= INLINE_BYTES:
        blobs = [(path, path.read_bytes()) for path in paths]
        stored = [syntax_in(blob[:META_BYTES]) or stored_syntax(path) for path, blob in blobs]
        if all(choose_syntax(syntax, ranges) == syntax for syntax in stored):
            kinds = (f"{DICOM}; transfer-syntax={syntax}" for syntax in stored)
            body = multipart_body(zip(kinds, (blob for _, blob in blobs), strict=True), marker)
            return Response(body, media_type=media_type)
    parts = [instance_part(path, ranges) for path in paths]
    return StreamingResponse(coalesce(multipart_stream(parts, marker)), media_type=media_type)


def _metadata(request: Request, node: NodeService, items: list[Located]) -> Response:
    if not any(m.matches(t) for m in accepted(request) for t in _JSON_TYPES):
        raise DicomwebProblem(406, "not_acceptable", f"metadata is {DICOM_JSON}")
    base = base_url(request)
    body = [metadata(node.blob_path(item.sha256), item, base) for item in items]
    return JSONResponse(body, media_type=DICOM_JSON)


def _frames(request: Request, node: NodeService, item: Located, numbers: list[int]) -> Response:
    source = open_pixels(node.blob_path(item.sha256))
    check_frames(source, numbers)
    media, decoded = choose_frame_media(source, multipart_part_types(request, OCTET_STREAM))
    content_type = part_type(media, source, decoded)
    parts = [
        (content_type, lambda n=n: iter([bytes_of_frame(source, n, decoded)])) for n in numbers
    ]
    marker = boundary()
    return StreamingResponse(
        multipart_stream(parts, marker),
        media_type=f'{MULTIPART}; type="{media}"; boundary={marker}',
    )


def _rendered(request: Request, node: NodeService, item: Located, number: int) -> Response:
    media = choose_type(accepted(request))
    options = parse_options(dict(request.query_params))
    source = open_pixels(node.blob_path(item.sha256))
    check_frames(source, [number])
    return Response(render(source, number, media, options), media_type=media)


__all__ = ["instance_url", "make_router"]
