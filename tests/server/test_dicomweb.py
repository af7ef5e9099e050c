"""DICOMweb search and retrieve over real HTTP, with dicomweb-client and httpx."""

from __future__ import annotations

import hashlib
import io

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from conftest import RunningNode


@pytest.fixture
def dw(served: RunningNode) -> DICOMwebClient:
    token = served.tokens["data_manager"]
    return DICOMwebClient(f"{served.url}/dicomweb", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def rows(served: RunningNode) -> list[tuple[str, str, str, str, str]]:
    with served.service.connection() as con:
        return con.execute(
            "SELECT st.study_uid, s.series_uid, i.sop_uid, i.sha256, s.modality"
            " FROM instance i JOIN series s USING (series_key)"
            " JOIN study st ON st.study_key = s.study_key ORDER BY i.sop_uid"
        ).fetchall()


def _value(item: dict[str, dict[str, list[object]]], tag: str) -> object:
    return item[tag]["Value"][0]


def test_search_for_studies_series_instances(dw: DICOMwebClient, served: RunningNode) -> None:
    cohort = served.cohort
    studies = dw.search_for_studies()
    assert len(studies) == cohort.studies
    total = sum(int(_value(s, "00201208")) for s in studies)  # type: ignore[call-overload]
    assert total == cohort.instances
    assert sum(int(_value(s, "00201206")) for s in studies) == cohort.series  # type: ignore[call-overload]
    assert all(str(_value(s, "00100020")).startswith("ANON") for s in studies)
    assert len(dw.search_for_series()) == cohort.series
    assert len(dw.search_for_instances()) == cohort.instances
    study = str(_value(studies[0], "0020000D"))
    series = dw.search_for_series(study_instance_uid=study)
    assert series and all(_value(s, "0020000D") == study for s in series)
    first = str(_value(series[0], "0020000E"))
    instances = dw.search_for_instances(study_instance_uid=study, series_instance_uid=first)
    assert len(instances) == _value(series[0], "00201209")


def test_matching(dw: DICOMwebClient, served: RunningNode, rows: list[tuple[str, ...]]) -> None:
    mr = dw.search_for_series(search_filters={"Modality": "MR"})
    assert len(mr) == served.cohort.by_modality.get("MR", 0)
    studies = dw.search_for_studies(search_filters={"ModalitiesInStudy": "MR,CT"})
    assert studies and all({"MR", "CT"} & set(s["00080061"]["Value"]) for s in studies)
    pseudonym = str(_value(dw.search_for_studies()[0], "00100020"))
    mine = dw.search_for_studies(search_filters={"PatientID": pseudonym})
    assert {str(_value(s, "00100020")) for s in mine} == {pseudonym}
    prefix = dw.search_for_studies(search_filters={"PatientID": pseudonym[:6] + "*"})
    assert len(prefix) >= len(mine)
    one_char = dw.search_for_studies(search_filters={"PatientID": pseudonym[:-1] + "?"})
    assert len(one_char) >= len(mine)
    dates = sorted(str(_value(s, "00080020")) for s in dw.search_for_studies())
    ranged = dw.search_for_studies(search_filters={"StudyDate": f"{dates[0]}-{dates[1]}"})
    assert len(ranged) == sum(dates[0] <= d <= dates[1] for d in dates)
    assert len(dw.search_for_studies(search_filters={"StudyDate": f"-{dates[0]}"})) >= 1
    uids = [r[2] for r in rows[:3]]
    listed = dw.search_for_instances(search_filters={"SOPInstanceUID": ",".join(uids)})
    assert sorted(str(_value(i, "00080018")) for i in listed) == sorted(uids)
    hostile = dw.search_for_studies(search_filters={"PatientID": "' OR 1=1 --"})
    assert hostile == []


def test_limit_offset_and_includefield(served: RunningNode, client: httpx.Client) -> None:
    everything = client.get("/dicomweb/studies").json()
    page = client.get("/dicomweb/studies", params={"limit": 2, "offset": 1})
    assert page.status_code == 200 and "additional results" in page.headers["warning"]
    assert page.json() == everything[1:3]
    wanted = client.get("/dicomweb/studies", params={"includefield": "PatientName,00080030"})
    item = wanted.json()[0]
    assert "00100010" in item and "00080030" in item
    full = client.get("/dicomweb/instances", params={"includefield": "all", "limit": 1}).json()
    assert {"00200013", "00280010", "00280004"} <= set(full[0])  # read from the header
    ignored = client.get("/dicomweb/studies", params={"AccessionNumber": "X"})
    assert ignored.status_code == 200 and "AccessionNumber" in ignored.headers["warning"]


def test_retrieve_instances_as_stored(
    dw: DICOMwebClient, served: RunningNode, rows: list[tuple[str, ...]]
) -> None:
    study, series, sop, sha, _ = rows[0]
    instance = dw.retrieve_instance(study, series, sop)
    assert instance.SOPInstanceUID == sop
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, instance, enforce_file_format=True)
    stored = served.service.blob_path(sha).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == sha
    in_series = dw.retrieve_series(study, series)
    assert sorted(i.SOPInstanceUID for i in in_series) == sorted(
        r[2] for r in rows if r[1] == series
    )
    assert len(dw.retrieve_study(study)) == sum(r[0] == study for r in rows)


def test_raw_instance_bytes_are_the_blob(
    client: httpx.Client, served: RunningNode, rows: list[tuple[str, ...]]
) -> None:
    study, series, sop, sha, _ = rows[0]
    answer = client.get(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert answer.status_code == 200
    marker = answer.headers["content-type"].split("boundary=")[1].encode()
    body = answer.content.split(b"--" + marker)[1]
    payload = body.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")]
    assert payload == served.service.blob_path(sha).read_bytes()


def test_metadata_frames_bulkdata_rendered(
    dw: DICOMwebClient, served: RunningNode, rows: list[tuple[str, ...]]
) -> None:
    # CT/MR: ultrasound pixels may be masked whole by burned-in-text cleaning
    study, series, sop, sha, _ = next(r for r in rows if r[4] in ("CT", "MR"))
    meta = dw.retrieve_instance_metadata(study, series, sop)
    assert meta["00080018"]["Value"] == [sop]
    assert meta["7FE00010"]["BulkDataURI"].endswith(f"/instances/{sop}/bulkdata/7FE00010")
    assert "00100010" in meta  # whole header, not just the catalog
    assert len(dw.retrieve_series_metadata(study, series)) == sum(r[1] == series for r in rows)
    stored = pydicom.dcmread(served.service.blob_path(sha))
    (frame,) = dw.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    assert frame == stored.pixel_array.tobytes()
    (bulk,) = dw.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert bulk == stored.PixelData
    jpeg = dw.retrieve_instance_rendered(study, series, sop, media_types=("image/jpeg",))
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (stored.Columns, stored.Rows)
    png = dw.retrieve_instance_rendered(study, series, sop, media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert np.asarray(Image.open(io.BytesIO(png))).std() > 0


def test_bad_requests_get_problem_details(
    client: httpx.Client, rows: list[tuple[str, ...]]
) -> None:
    study, series, sop, _, _ = rows[0]
    other_study, other_series = next((r[0], r[1]) for r in rows if r[1] != series)
    instance = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    cases = {
        "/dicomweb/studies/not-a-uid": 400,
        "/dicomweb/studies/1.2.3.4/metadata": 404,
        f"/dicomweb/studies/1.2.3.4/series/{series}": 404,
        f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3.4": 404,
        f"/dicomweb/studies/{other_study}/series/{other_series}/instances/{sop}": 404,
        "/dicomweb/studies/%2E%2E/series": 400,
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}%00": 400,
        f"{instance}/frames/0": 400,
        f"{instance}/frames/1,x": 400,
        f"{instance}/frames/999": 404,
        f"{instance}/bulkdata/..%2F..%2Fetc": 400,
        f"{instance}/bulkdata/00091234": 404,
        "/dicomweb/studies?NoSuchAttribute=1": 400,
        "/dicomweb/studies?StudyDate=2020": 400,
        "/dicomweb/studies?StudyInstanceUID=1.2,abc": 400,
        "/dicomweb/studies?limit=-1": 400,
        f"{instance}/rendered?quality=0": 400,
        f"{instance}/rendered?window=nan,nan": 400,
        f"{instance}/rendered?window=40,inf": 400,
        f"{instance}/rendered?viewport=100000,100000": 400,
    }
    for url, status in cases.items():
        answer = client.get(url)
        assert answer.status_code == status, (url, answer.status_code, answer.text)
        if status != 404 or "frames" in url:
            assert answer.headers["content-type"] == "application/problem+json", url
    for traversal in ("/dicomweb/studies/..%2F..%2Foncofed.toml", f"{instance}/bulkdata/../../x"):
        answer = client.get(traversal)
        assert answer.status_code in (400, 404) and b"name =" not in answer.content
    refused = client.get(f"{instance}/rendered", headers={"Accept": "image/gif"})
    assert refused.status_code == 406
    xml = client.get("/dicomweb/studies", headers={"Accept": "application/dicom+xml"})
    assert xml.status_code == 406
    compressed = client.get(
        instance,
        headers={
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50"
        },
    )
    assert compressed.status_code == 406


def test_access_control(served: RunningNode, rows: list[tuple[str, ...]]) -> None:
    study, series, sop, _, _ = rows[0]
    instance = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"

    def get(who: str | None, url: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {served.tokens[who]}"} if who else {}
        return httpx.get(served.url + url, headers=headers, timeout=30)

    assert get(None, "/dicomweb/studies").status_code == 401
    assert get("ai_provider", "/dicomweb/studies").status_code == 403
    assert get("researcher", "/dicomweb/studies").json() == []
    assert get("researcher", instance).status_code == 403
    assert len(get("granted", "/dicomweb/studies").json()) == served.cohort.studies
    assert get("granted", instance + "/metadata").status_code == 200
    assert get(None, "/dicomweb").status_code == 200


def test_openapi_lists_dicomweb(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/dicomweb/studies",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}",
    } <= set(paths)


def test_openapi_documents_qido_keys(served: RunningNode) -> None:
    """QIDO keys are read from the raw query string; the OpenAPI document still lists them."""
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    studies = {p["name"] for p in paths["/dicomweb/studies"]["get"]["parameters"]}
    assert {"PatientID", "StudyDate", "StudyInstanceUID", "limit", "includefield"} <= studies
    assert "Modality" not in studies  # a series key
    in_series = paths["/dicomweb/studies/{study}/series/{series}/instances"]["get"]["parameters"]
    names = [p["name"] for p in in_series]
    assert "SOPInstanceUID" in names and "StudyInstanceUID" not in names  # set by the path
