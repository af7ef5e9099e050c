"""Grants decided at the hub, applied and enforced at nodes.

The node handlers on their own (idempotent, all-or-nothing, a revocation that overtakes its grant
wins, audited), then end to end: a researcher's node token retrieves a collection's images only
once the hub's grant has reached the node process, and no longer after the hub revokes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from federation_support import Federation, federation, free_port, oncofed, stop, wait_until
from typer.testing import CliRunner

from oncofed.access.store import IdentityStore
from oncofed.agent.grants import apply_grant, revoke_grant
from oncofed.agent.handlers import AgentContext
from oncofed.catalog.writer import CollectionSpec, ensure_collection
from oncofed.cli.app import app
from oncofed.errors import OncofedError
from oncofed.node import Node
from oncofed.server.service import NodeService

REQUEST = "5b0c4b8e-0000-4000-8000-000000000001"


def body(**changes: Any) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(days=30)
    return {"request_id": REQUEST, "user": "rita", "tier": 3,
            "collections": ["prostate-wsi", "prostate-mri"], "expires_at": expires.isoformat(),
            **changes}  # fmt: skip


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AgentContext]:
    with Node.init(tmp_path / "node", name="node-a") as node:
        for name in ("prostate-wsi", "prostate-mri"):
            ensure_collection(node.catalog.con, CollectionSpec(name, name))
    with NodeService.open(tmp_path / "node") as service:
        yield AgentContext(service, "node-a")


def grants_of(ctx: AgentContext) -> dict[str, int]:
    with ctx.service.catalog() as catalog:
        return IdentityStore(catalog.con).active_grants("rita")


def audit_actions(ctx: AgentContext) -> list[str]:
    with ctx.service.catalog():
        return [e.action for e in ctx.service.node.audit.entries() if e.actor == "hub:node-a"]


def test_apply_is_idempotent_and_audited_once(ctx: AgentContext) -> None:
    first = apply_grant(ctx, body())
    assert first == {"applied": [f"{REQUEST}/prostate-wsi", f"{REQUEST}/prostate-mri"]}
    assert apply_grant(ctx, body()) == {"applied": []}  # delivered twice: nothing changes
    assert grants_of(ctx) == {"prostate-wsi": 3, "prostate-mri": 3}
    assert revoke_grant(ctx, body())["revoked"] == first["applied"]
    assert revoke_grant(ctx, body()) == {"revoked": []}
    assert grants_of(ctx) == {}
    assert audit_actions(ctx) == ["grant.apply", "grant.revoke"]


def test_a_revocation_that_overtakes_its_grant_wins(ctx: AgentContext) -> None:
    assert len(revoke_grant(ctx, body())["revoked"]) == 2
    assert apply_grant(ctx, body()) == {"applied": []}
    assert grants_of(ctx) == {}


def test_grants_expire_at_the_node_without_a_message(ctx: AgentContext) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    apply_grant(ctx, body(expires_at=past))
    assert grants_of(ctx) == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"collections": ["prostate-wsi", "no-such"]}, r"no collections \['no-such'\] here"),
        ({"collections": []}, "collections must be a non-empty list"),
        ({"tier": "3"}, "user and tier are required"),
        ({"tier": 1}, "grants are for tier 2"),
        ({"user": "rita; DROP TABLE"}, "invalid user id"),
        ({"expires_at": "soon"}, "'soon' is not a time"),
        ({"expires_at": "2030-01-01T00:00:00"}, "has no time zone"),
        ({"request_id": ""}, "names its access request"),
    ],
)
def test_bad_grant_tasks_are_refused_and_change_nothing(
    ctx: AgentContext, changes: dict[str, Any], message: str
) -> None:
    apply_grant(ctx, body(request_id="earlier", collections=["prostate-mri"]))
    with pytest.raises(OncofedError, match=message):
        apply_grant(ctx, body(**changes))
    assert grants_of(ctx) == {"prostate-mri": 3}


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    yield from federation(tmp_path)


def hub_user(fed: Federation, user: str, roles: list[str], nodes: tuple[str, ...] = ()) -> str:
    url, admin = f"{fed.url}/hub/v1", fed.admin
    new = {"user_id": user, "roles": roles, "nodes": list(nodes)}
    made = httpx.post(f"{url}/users", json=new,
                      headers=admin)  # fmt: skip
    assert made.status_code == 201, made.text
    issued = httpx.post(f"{url}/users/{user}/tokens", json={}, headers=admin)
    return str(issued.json()["token"])


def test_grant_reaches_a_node_process_and_its_revocation_too(fed: Federation) -> None:
    fed.start_hub()
    home = fed.add_node("east", patients=3, seed=11)
    with Node(home) as node:
        store = IdentityStore(node.catalog.con)
        store.add_user("rita", ["researcher"])  # the node's data manager made her an account
        rita_at_node = store.issue_token("rita", days=1).token
        study, series = node.catalog.con.execute(
            "SELECT study_uid, series_uid FROM series JOIN study USING (study_key)"
            " WHERE series.collection_id = 'east-coll' LIMIT 1"
        ).fetchone()
    port = free_port()
    server = oncofed("node", "serve", str(home), "--port", str(port))
    try:
        retrieve = f"http://127.0.0.1:{port}/dicomweb/studies/{study}/series/{series}"
        headers = {"Authorization": f"Bearer {rita_at_node}"}
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200)
        assert httpx.get(retrieve, headers=headers).status_code == 403

        tokens = {
            "rita": hub_user(fed, "rita", ["researcher"]),
            "carl": hub_user(fed, "carl", ["access_committee"]),
        }
        hub_user(fed, "dana", ["data_manager"], ("east",))
        draft = {"project": "P", "purpose": "test a model", "tier": 3,
                 "collections": {"east": ["east-coll"]}, "duration_days": 30}  # fmt: skip

        def call(who: str, path: str, payload: Any = None) -> dict[str, Any]:
            answer = httpx.post(f"{fed.url}/hub/v1/requests{path}", json=payload or {},
                                headers={"Authorization": f"Bearer {tokens[who]}"})  # fmt: skip
            assert answer.status_code in (200, 201), answer.text
            return dict(answer.json())

        request_id = call("rita", "", draft)["request_id"]
        for who, verb in (("rita", "submit"), ("carl", "review"), ("carl", "approve")):
            call(who, f"/{request_id}/{verb}")
        listed = CliRunner().invoke(app, ["node", "requests", "list", "-n", str(home), "--json"])
        assert listed.exit_code == 0, listed.output
        assert [r["request_id"] for r in json.loads(listed.output)] == [request_id]
        accepted = CliRunner().invoke(
            app, ["node", "requests", "accept", request_id, "-n", str(home), "--as", "dana"]
        )
        assert accepted.exit_code == 0 and "granted" in accepted.output, accepted.output

        wait_until(lambda: httpx.get(retrieve, headers=headers).status_code == 200, timeout=30)
        images = httpx.get(retrieve, headers=headers)
        assert images.headers["content-type"].startswith("multipart/related")
        assert b"DICM" in images.content

        call("carl", f"/{request_id}/revoke", {"reason": "protocol breach"})
        wait_until(lambda: httpx.get(retrieve, headers=headers).status_code == 403, timeout=30)
        shown = f"{fed.url}/hub/v1/requests/{request_id}"
        carl = {"Authorization": f"Bearer {tokens['carl']}"}
        wait_until(
            lambda: (
                [d["state"] for d in httpx.get(shown, headers=carl).json()["deliveries"]]
                == ["done", "done"]
            )
        )
    finally:
        stop(server)
    with Node(home, read_only=True) as node:
        hub_entries = [(e.action, e.target) for e in node.audit.entries() if e.actor == "hub:east"]
    target = f"access_request/{request_id}"
    assert [(a, t) for a, t in hub_entries if a.startswith("grant.")] == [
        ("grant.apply", target),
        ("grant.revoke", target),
    ]
