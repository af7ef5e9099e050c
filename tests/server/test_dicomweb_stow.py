"""STOW-RS into a fresh node: de-identified on the way in, then found by QIDO."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from conftest import RunningNode, make_callers, serving
from oncofed.catalog.writer import CollectionSpec
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService
from oncofed.testing.dicom import generate_cohort

LIMIT = 2_000_000
CT = 'multipart/related; type="application/dicom"; boundary=XyZ'


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    root = tmp_path_factory.mktemp("stow")
    cohort = generate_cohort(root / "in", patients=2, seed=7)
    with Node.init(root / "node", name="stow-hospital") as node:
        node.ensure_collection(CollectionSpec("synth", "synth"))  # make_callers grants on it
        tokens = make_callers(node)
    service = NodeService.open(root / "node")
    app = create_app(service)
    app.state.dicomweb_max_upload_bytes = LIMIT
    with serving(app) as url:
        yield RunningNode(url, service, cohort, tokens)
    service.close()


def _client(node: RunningNode, who: str = "data_manager") -> httpx.Client:
    headers = {"Authorization": f"Bearer {node.tokens[who]}"}
    return httpx.Client(base_url=node.url, headers=headers, timeout=60)


def _body(*parts: bytes, content_type: str = "application/dicom") -> bytes:
    out = b""
    for part in parts:
        out += b"--XyZ\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + part + b"\r\n"
    return out + b"--XyZ--\r\n"


def _state(node: RunningNode) -> tuple[int, int]:
    with node.service.connection() as con:
        row = con.execute("SELECT count(*) FROM instance").fetchone()
    reports = list(node.service.node.reports_dir.glob("ingest-*.json"))
    return (int(row[0]) if row else 0), len(reports)


def test_stow_deidentifies_and_qido_finds(fresh: RunningNode) -> None:
    path = fresh.cohort.files[0]
    token = fresh.tokens["data_manager"]
    dw = DICOMwebClient(f"{fresh.url}/dicomweb", headers={"Authorization": f"Bearer {token}"})
    answer = dw.store_instances([pydicom.dcmread(path)])
    (stored,) = answer.ReferencedSOPSequence
    uid = stored.ReferencedSOPInstanceUID
    assert uid != pydicom.dcmread(path).SOPInstanceUID  # UIDs are replaced
    with fresh.service.connection() as con:
        (sha,) = con.execute("SELECT sha256 FROM instance WHERE sop_uid = ?", [uid]).fetchone()
    blob = fresh.service.blob_path(sha).read_bytes()
    for planted in fresh.cohort.identifiers[path]:
        assert planted.encode() not in blob, planted
    (found,) = dw.search_for_instances(search_filters={"SOPInstanceUID": uid})
    assert found["00081190"]["Value"][0] == stored.RetrieveURL
    assert (
        dw.retrieve_instance(
            found["0020000D"]["Value"][0], found["0020000E"]["Value"][0], uid
        ).PatientIdentityRemoved
        == "YES"
    )
    again = dw.store_instances([pydicom.dcmread(path)])  # already stored: still a success
    assert again.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uid


def test_a_series_retrieved_again_after_a_store_has_the_new_instance(fresh: RunningNode) -> None:
    by_series: dict[str, list[Path]] = {}
    for path in fresh.cohort.files:
        by_series.setdefault(str(pydicom.dcmread(path).SeriesInstanceUID), []).append(path)
    first, second = next(paths for paths in by_series.values() if len(paths) >= 2)[:2]
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    with _client(fresh) as client:
        stored = client.post(
            "/dicomweb/studies", content=_body(first.read_bytes()), headers={"Content-Type": CT}
        )
        url = stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        series_url = url.split("/instances/")[0].removeprefix(fresh.url)
        assert client.get(series_url, headers=accept).content.count(b"DICM") == 1
        assert client.get(series_url, headers=accept).content.count(b"DICM") == 1  # remembered
        client.post(
            "/dicomweb/studies", content=_body(second.read_bytes()), headers={"Content-Type": CT}
        )
        assert client.get(series_url, headers=accept).content.count(b"DICM") == 2


def test_stow_statuses(fresh: RunningNode) -> None:
    good = [p.read_bytes() for p in fresh.cohort.files[1:3]]
    with _client(fresh) as http:
        ok = http.post("/dicomweb/studies", content=_body(*good), headers={"Content-Type": CT})
        assert ok.status_code == 200 and len(ok.json()["00081199"]["Value"]) == 2
        some = http.post(
            "/dicomweb/studies", content=_body(good[0], b"not dicom"), headers={"Content-Type": CT}
        )
        assert some.status_code == 202
        (failed,) = some.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0xC000]
        none = http.post(
            "/dicomweb/studies", content=_body(b"junk", b"more"), headers={"Content-Type": CT}
        )
        assert none.status_code == 409
        wrong_part = http.post(
            "/dicomweb/studies",
            content=_body(good[0], content_type="application/dicom+json"),
            headers={"Content-Type": CT},
        )
        assert wrong_part.status_code == 409


def test_stow_refuses_bad_requests_without_storing(fresh: RunningNode) -> None:
    before = _state(fresh)
    good = fresh.cohort.files[3].read_bytes()
    cases = [
        ({"Content-Type": "application/dicom"}, good, 415),
        (
            {"Content-Type": 'multipart/related; type="application/dicom+json"; boundary=XyZ'},
            _body(good),
            415,
        ),
        ({"Content-Type": 'multipart/related; type="application/dicom"'}, _body(good), 400),
        ({"Content-Type": CT}, _body(good)[:-12], 400),  # no closing boundary
        ({"Content-Type": CT}, b"", 400),
        ({"Content-Type": CT}, b"garbage without boundaries", 400),
        ({"Content-Type": CT}, _body(good, b"x" * LIMIT), 413),
    ]
    with _client(fresh) as http:
        for headers, content, status in cases:
            answer = http.post("/dicomweb/studies", content=content, headers=headers)
            assert answer.status_code == status, (headers, status, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
    with _client(fresh, "researcher") as http:
        denied = http.post("/dicomweb/studies", content=_body(good), headers={"Content-Type": CT})
        assert denied.status_code == 403
    assert _state(fresh) == before


def test_disconnect_mid_upload_stores_nothing(fresh: RunningNode) -> None:
    before = _state(fresh)
    body = _body(fresh.cohort.files[4].read_bytes())
    host, port = fresh.url.removeprefix("http://").split(":")
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CT}\r\n"
        f"Authorization: Bearer {fresh.tokens['data_manager']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)
    time.sleep(0.5)
    assert _state(fresh) == before
    leftovers = list(Path(fresh.service.node.store.tmp).iterdir())
    assert leftovers == []


def test_a_stalled_upload_does_not_hold_up_other_callers(fresh: RunningNode) -> None:
    before = _state(fresh)
    body = _body(fresh.cohort.files[5].read_bytes())
    host, port = fresh.url.removeprefix("http://").split(":")
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CT}\r\n"
        f"Authorization: Bearer {fresh.tokens['data_manager']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as slow, _client(fresh) as http:
        slow.sendall(head + body[:100])  # then stalls, connection open
        started = time.monotonic()
        for _ in range(5):
            assert http.get("/api/v1/health").status_code == 200
            assert http.get("/dicomweb/studies").status_code == 200
        assert time.monotonic() - started < 5
    time.sleep(0.5)
    assert _state(fresh) == before
    assert list(Path(fresh.service.node.store.tmp).iterdir()) == []
