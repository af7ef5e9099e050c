"""Who may do what: every REST endpoint against every kind of caller, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from conftest import RunningNode
from oncofed.access.store import IdentityStore
from oncofed.errors import AuthError, ConfigError

CALLERS = [
    "anonymous", "admin", "data_manager", "researcher", "granted", "ai_provider", "committee",
    "revoked", "expired", "disabled", "malformed", "forged",
]  # fmt: skip
BAD = {"revoked": 401, "expired": 401, "disabled": 401, "malformed": 401, "forged": 401}
OPEN = dict.fromkeys(CALLERS, 200)
CATALOG = {**OPEN, **BAD}
SERIES = {
    **dict.fromkeys(CALLERS, 403),
    "anonymous": 401, "admin": 200, "data_manager": 200, "granted": 200, **BAD,
}  # fmt: skip
STEWARD = {
    **dict.fromkeys(CALLERS, 403),
    "anonymous": 401, "admin": 200, "data_manager": 200, **BAD,
}  # fmt: skip
ENDPOINTS: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "/api/v1/health", OPEN),
    ("GET", "/api/v1/version", OPEN),
    ("GET", "/api/v1/facets", OPEN),
    ("GET", "/api/v1/collections", CATALOG),
    ("POST", "/api/v1/query", CATALOG),
    ("GET", "/api/v1/series", SERIES),
    ("GET", "/api/v1/ingest/reports", STEWARD),
]


def call(served: RunningNode, caller: str, method: str, path: str) -> httpx.Response:
    headers = {} if caller == "anonymous" else {"Authorization": f"Bearer {served.tokens[caller]}"}
    body = {"where": {"collection": ["synth"]}} if method == "POST" else None
    return httpx.request(method, served.url + path, headers=headers, json=body, timeout=30)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "expected"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_authorisation_matrix(
    served: RunningNode, caller: str, method: str, path: str, expected: dict[str, int]
) -> None:
    answer = call(served, caller, method, path)
    assert answer.status_code == expected[caller], answer.text
    if answer.status_code in (401, 403):
        assert answer.headers["content-type"] == "application/problem+json"


def test_counts_are_exact_for_stewards_and_protected_for_others(served: RunningNode) -> None:
    exact = call(served, "data_manager", "POST", "/api/v1/query").json()
    assert exact["counts"]["patients"] == served.cohort.patients  # 5 patients: below k
    for caller in ("anonymous", "researcher", "granted"):
        protected = call(served, caller, "POST", "/api/v1/query").json()
        assert protected["protected"] is True
        assert protected["counts"]["patients"] == "<10"
        assert protected["counts"]["instances"] == round(served.cohort.instances, -1)


def test_series_are_limited_to_granted_collections(served: RunningNode) -> None:
    rows = httpx.get(
        served.url + "/api/v1/series",
        params={"where": '{"collection": ["other"]}'},
        headers={"Authorization": f"Bearer {served.tokens['granted']}"},
    )
    assert rows.status_code == 403 and "other" in rows.json()["detail"]


def test_every_data_read_is_audited(served: RunningNode) -> None:
    call(served, "granted", "GET", "/api/v1/series")
    with served.service.connection() as con:
        actors = {
            r[0] for r in con.execute("SELECT actor FROM audit WHERE action = 'read'").fetchall()
        }
    assert "granted" in actors


def test_token_lifecycle(served: RunningNode) -> None:
    with served.service.connection() as con:
        store = IdentityStore(con)
        store.add_user("lifecycle", ["researcher"])
        with pytest.raises(ConfigError, match="do not allow scopes"):
            store.issue_token("lifecycle", scopes=["admin"])
        issued = store.issue_token("lifecycle", scopes=["read:catalog"], days=1)
        assert store.authenticate(issued.token).user_id == "lifecycle"
        stored = con.execute(
            "SELECT secret_sha256 FROM api_token WHERE token_id = ?", [issued.token_id]
        ).fetchone()
        assert stored is not None and issued.token.split("_", 2)[2] not in str(stored[0])
        store.revoke_token(issued.token_id)
        with pytest.raises(AuthError, match="revoked"):
            store.authenticate(issued.token)
