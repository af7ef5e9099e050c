"""The REST API over real HTTP: answers, problem details for bad input, OpenAPI."""

from __future__ import annotations

import httpx

from conftest import RunningNode


def test_health_and_version(client: httpx.Client) -> None:
    assert client.get("/api/v1/health").json() == {"status": "ok", "node": "test-hospital"}
    assert client.get("/api/v1/version").json()["catalog_schema"] >= 2


def test_query_counts_match_the_cohort(client: httpx.Client, served: RunningNode) -> None:
    answer = client.post(
        "/api/v1/query", json={"where": {"collection": ["synth"]}, "facets": ["modality"]}
    )
    assert answer.status_code == 200
    body = answer.json()
    cohort = served.cohort
    assert (body["counts"]["patients"], body["counts"]["instances"]) == (
        cohort.patients,
        cohort.instances,
    )
    assert {b["value"]: b["series"] for b in body["facets"]["modality"]} == cohort.by_modality


def test_collections_and_series(client: httpx.Client, served: RunningNode) -> None:
    (synth,) = client.get("/api/v1/collections").json()
    assert synth["collection_id"] == "synth" and synth["series"] == served.cohort.series
    rows = client.get(
        "/api/v1/series", params={"where": '{"modality": ["MR"]}', "limit": 1000}
    ).json()
    assert len(rows) == served.cohort.by_modality.get("MR", 0)
    assert all(r["modality"] == "MR" and r["patient"].startswith("ANON") for r in rows)


def test_bad_queries_get_problem_details(client: httpx.Client) -> None:
    answer = client.post("/api/v1/query", json={"where": {"colour": ["red"]}})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["title"] == "invalid_query" and "valid fields" in problem["detail"]
    hostile = client.post("/api/v1/query", json={"where": {"collection": ["' OR 1=1 --"]}})
    assert hostile.status_code == 200 and hostile.json()["counts"]["series"] == 0
    assert client.get("/api/v1/series", params={"where": "{not json"}).status_code == 400
    assert client.post("/api/v1/query", json={"facet_limit": 0}).status_code == 422


def test_ingest_reports_cannot_escape_their_folder(client: httpx.Client) -> None:
    names = client.get("/api/v1/ingest/reports").json()
    assert names and client.get(f"/api/v1/ingest/reports/{names[0]}").json()["added"] > 0
    for name in ("..%2F..%2Foncofed.toml", "../oncofed.toml", "oncofed.toml"):
        assert client.get(f"/api/v1/ingest/reports/{name}").status_code == 404


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/query", "/api/v1/collections", "/api/v1/health"} <= set(spec["paths"])


def test_huge_offsets_are_refused_not_crashing(client: httpx.Client) -> None:
    answer = client.get("/api/v1/series", params={"offset": 2**63, "limit": 0})
    assert answer.status_code == 422  # found by the OpenAPI fuzzer: was a 500
