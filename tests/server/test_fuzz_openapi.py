"""Property-based fuzzing of the node's OpenAPI surface (schemathesis 4), bounded for CI.

Every generated request, sent in-process (ASGI) with a data manager's token, must get an answer
that is not a server error, whose body conforms to the documented schema, and that is an RFC 9457
problem (``application/problem+json``, with a matching ``status``) when it is a 4xx.

What FastAPI's description leaves out is declared here, on a copy of the document, so that it
gets fuzzed and checked too: QIDO-RS search keys and controls, rendering options and the Accept
header of the DICOMweb routes (they read the query and headers themselves), and the problem body
of every 4xx. Path UIDs are drawn at random and from instances the node really holds (random UIDs
only ever reach 400/404).

Left out: STOW-RS (``POST /dicomweb/studies``): its ``multipart/related`` body is read from the
raw request, which the description does not model and schemathesis cannot generate; it has its
own tests (test_dicomweb_stow.py). Binary WADO-RS answers (multipart, frames, rendered images) are
checked for status and problem details only: their bodies have no JSON schema.

The run is deterministic (derandomised, no example database, no shrinking) and bounded:
``MAX_EXAMPLES`` per operation and generation strategy, about 15 s on two idle cores.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from conftest import RunningNode
from oncofed.server.app import create_app

MAX_EXAMPLES = 8
PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
QIDO_KEYS = [
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "StudyDate",
    "StudyDescription", "PatientID", "PatientSex", "Modality", "ModalitiesInStudy",
    "SeriesDescription", "BodyPartExamined", "Manufacturer", "Rows", "Columns", "NumberOfFrames",
    "00100020", "0020000D",
]  # fmt: skip
# Edge values of search keys (negative generation sends arbitrary other values and types).
EDGES = [
    "", "*", "?", "a*b?", "\\", "%", "_", "1.2.3", "1.2.3,4.5.6", "0", "-1", "١٢", "20200101",
    "20200101-", "-20201231", "20200101-20201231", "20201332", "-", "nan", "1e3", "MR\\CT", "all",
]  # fmt: skip
ACCEPT = [
    "*/*", "application/dicom+json", "application/json", "text/html", "image/png",
    "image/jpeg", "image/jpeg;q=0", 'multipart/related; type="application/dicom"',
    'multipart/related; type="application/octet-stream"', "multipart/related", "multipart/*",
    'multipart/related; type="image/jpeg"; transfer-syntax=*', "application/dicom",
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
    "image/*", ",", ";", '"', "a/b; q=x",
]  # fmt: skip
RENDER_OPTIONS = {
    "quality": ["1", "100", "0", "101", "x", "-5"],
    "viewport": ["64,64", "1,1", "0,0", "100000,100000", "5", "a,b", "-1,-1"],
    "window": ["40,400", "0,0", "0,-1", "nan,nan", "inf,1", "1e308,1e308", "1", "x,y"],
}


def _text(edges: list[str]) -> dict[str, Any]:
    """Positive generation picks the edge values; negative generation anything but them."""
    return {"type": "string", "enum": edges}


def _query(name: str, edges: list[str]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": _text(edges)}


def augmented(document: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI document with edge values for what DICOMweb routes read by hand (the
    QIDO keys it documents are replaced by these), and 4xx problem bodies."""
    out = copy.deepcopy(document)
    problem = {"description": "problem", "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
    for path, item in out["paths"].items():
        for operation in item.values():
            operation["responses"].setdefault("4XX", problem)
        operation = item.get("get")
        if operation is None or not path.startswith("/dicomweb"):
            continue
        extra = [{"name": "accept", "in": "header", "schema": _text(ACCEPT)}]
        if path.endswith(("/studies", "/series", "/instances")):
            extra += [_query(key, EDGES) for key in QIDO_KEYS]
            extra += [
                _query("limit", ["0", "1", "-1", "x", "100000"]),
                _query("offset", ["0", "5", "-1", "x"]),
                _query("includefield", [*QIDO_KEYS, "all", "7FE00010", "00000000", "x"]),
                _query("fuzzymatching", ["true", "false"]),
            ]
        if path.endswith("/rendered"):
            extra += [_query(name, values) for name, values in RENDER_OPTIONS.items()]
        replaced = {p["name"] for p in extra}
        kept = [p for p in operation.get("parameters", []) if p["name"] not in replaced]
        operation["parameters"] = [*kept, *extra]
    return out


def stored_paths(served: RunningNode) -> list[dict[str, str]]:
    """Path parameters naming instances the node holds."""
    with served.service.connection() as con:
        rows = con.execute(
            "SELECT st.study_uid, s.series_uid, i.sop_uid FROM instance i"
            " JOIN series s USING (series_key) JOIN study st USING (study_key)"
            " ORDER BY i.sop_uid LIMIT 2"
        ).fetchall()
    return [{"study": a, "series": b, "sop": c} for a, b, c in rows]


def test_no_server_errors_and_problem_details(served: RunningNode) -> None:
    app = create_app(served.service)
    schema = schemathesis.openapi.from_dict(augmented(app.openapi()))
    schema.app = app
    schema = schema.exclude(method="POST", path="/dicomweb/studies")
    headers = {"Authorization": f"Bearer {served.tokens['data_manager']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    real = stored_paths(served)
    assert real, "the served node holds no instances"
    failures: list[str] = []

    for operation in operations:
        names = {p.name for p in operation.iter_parameters() if p.location == "path"}
        known = [{k: v for k, v in p.items() if k in names} for p in real if "study" in names]
        strategies = [
            operation.as_strategy(),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            *[operation.as_strategy(path_parameters=p) for p in known],
        ]

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=MAX_EXAMPLES * len(strategies),
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],  # no shrinking: bounded time; failures as generated
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            status, kind = response.status_code, response.headers.get("content-type", [""])[0]
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )
            if 400 <= status < 500:
                curl = case.as_curl_command  # rendered only when an assertion fails
                assert kind.startswith(PROBLEM_JSON), f"{status} answered as {kind}: {curl()}"
                assert json.loads(response.content)["status"] == status, curl()

        try:
            check()
        except Exception as exc:  # every operation's failure, reported together
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:2000]}")

    assert not failures, "\n\n".join(failures)


def instance_path(served: RunningNode) -> str:
    p = stored_paths(served)[0]
    return f"/dicomweb/studies/{p['study']}/series/{p['series']}/instances/{p['sop']}"


EDGE_INPUTS = [
    "/dicomweb/instances?Rows=99999999999999999999999",
    "/dicomweb/studies?limit=99999999999999999999999",
    "/dicomweb/studies?StudyDate=20200101-20200101-20200101",
    "/dicomweb/studies?StudyDate=00000101",
    "/dicomweb/instances?includefield=all&limit=1",
    "/dicomweb/instances?includefield=FFFFFFFF",
    "/dicomweb/instances?SOPInstanceUID=" + ",".join(["1.2"] * 2000),
    "/api/v1/series?offset=1000000000000",  # found by this fuzzing earlier: fixed (MAX_OFFSET)
    '/api/v1/series?where={"age": [1e999, 2]}',
    "{instance}/rendered?window=nan,nan",
    "{instance}/rendered?window=inf,1",
    "{instance}/rendered?viewport=100000,100000",
    "{instance}/frames/999999999",
    "{instance}/bulkdata/7FE00010",
    "{instance}/bulkdata/00100010/",
    "/dicomweb/instances?Rows=²",  # found by this fuzzing: fixed (ASCII digits only)
    "/dicomweb/studies?offset=9223372036854775808",  # fixed (MAX_OFFSET)
    pytest.param("/api/v1/series?where=" + "[" * 5000, id="/api/v1/series?where=[[[...5000"),
]


@pytest.mark.parametrize("url", EDGE_INPUTS)
def test_edge_inputs_get_answers_not_server_errors(served: RunningNode, url: str) -> None:
    """Inputs fuzzing found or suspected, replayed every run (regressions)."""
    client = TestClient(create_app(served.service), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {served.tokens['data_manager']}"}
    answer = client.get(url.replace("{instance}", instance_path(served)), headers=headers)
    assert answer.status_code < 500, answer.text[:300]
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == PROBLEM_JSON


def test_framework_errors_are_problem_details(served: RunningNode) -> None:
    client = TestClient(create_app(served.service), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {served.tokens['data_manager']}"}
    answers = [
        client.get("/api/v1/series?limit=-1", headers=headers),  # 422: request validation
        client.post(
            "/api/v1/query",
            content=b"[" * 5000,
            headers={**headers, "content-type": "application/json"},
        ),  # 400: an unparsable body
        client.get("/api/v1/no-such-route", headers=headers),  # 404: no route
        client.delete("/api/v1/health", headers=headers),  # 405
    ]
    assert [a.status_code for a in answers] == [422, 400, 404, 405]
    assert [a.headers["content-type"] for a in answers] == [PROBLEM_JSON] * len(answers)
    assert "limit" in answers[0].json()["detail"]
    assert answers[3].headers["allow"] == "GET"
