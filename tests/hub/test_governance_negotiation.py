"""Access negotiation over HTTP against a real hub process, with a real token for each role.

The whole path (draft, edit, submit, review, approve, node decisions by a data holder's token and
by a node's signed message, grant, revoke), every wrong role (403) and wrong state (409) refused
as problem details without changing anything, and a hub killed mid-negotiation: nothing lost,
its audit chain verifies, and an edited copy of it is caught.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from federation_support import Federation, federation
from typer.testing import CliRunner

from oncofed.agent.membership import HubChannel, Membership, join
from oncofed.cli.app import app
from oncofed.cli.hub_access import HubRefusal
from oncofed.errors import ConfigError
from oncofed.hub.keys import KeyPaths, generate_keypair
from oncofed.hub.signing import Signer

NODES = ("node-a", "node-b")
USERS: dict[str, dict[str, Any]] = {
    "rita": {"roles": ["researcher"]},
    "oscar": {"roles": ["researcher"]},
    "carl": {"roles": ["access_committee"]},
    "dana": {"roles": ["data_manager"], "nodes": ["node-a"]},
    "bert": {"roles": ["data_manager"], "nodes": ["node-b"]},
    "vic": {"roles": ["ai_provider"]},
}
DRAFT = {
    "project": "PROSTATE-AI",
    "purpose": "validate an ISUP grading model",
    "cohort": {"modality": ["SM"], "age": [50, 80]},
    "collections": {"node-a": ["prostate-wsi"], "node-b": ["prostate-mri"]},
    "tier": 3,
    "duration_days": 90,
}


class Governed:
    """A hub with two joined nodes and a user (and token) for every role."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        fed.start_hub()
        self.tokens = {"admin": fed.token}
        for node in NODES:
            assert join(fed.root / node, fed.url, node, name=node) == "pending"
            self.call("admin", "POST", f"/nodes/{node}/approve")
        for user, body in USERS.items():
            self.call("admin", "POST", "/users", {"user_id": user, **body}, status=201)
            issued = self.call("admin", "POST", f"/users/{user}/tokens", {"days": 1}, status=201)
            self.tokens[user] = issued["token"]

    def send(self, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.request(
            method, f"{self.fed.url}/hub/v1{path}", json=body, headers=headers, timeout=30
        )

    def call(self, who: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        answer = self.send(who, method, path, body)
        assert answer.status_code == status, answer.text
        return answer.json()

    def step(self, who: str, request_id: str, verb: str, **body: Any) -> dict[str, Any]:
        return self.call(who, "POST", f"/requests/{request_id}/{verb}", body)

    def signed(self, node: str, path: str, kind: str, body: dict[str, Any], reply: str) -> Any:
        """A node's signed call, as `oncofed node requests ...` makes it."""
        home = self.fed.root / node
        with httpx.Client() as client:
            channel = HubChannel(home, Membership.read(home), client)
            try:
                return channel.call(path, kind, body, reply).body
            finally:
                channel.close()

    def node_says(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.signed(node, "node/decision", "decision", body, "decided")

    def inbox(self, node: str) -> list[dict[str, Any]]:
        return self.signed(node, "node/requests", "requests", {}, "requests")["requests"]

    def reach(self, state: str) -> str:
        """A new request by rita, moved to ``state``."""
        request_id: str = self.call("rita", "POST", "/requests", DRAFT, status=201)["request_id"]
        path = {
            "draft": [],
            "submitted": [("rita", "submit", {})],
            "under_review": [("rita", "submit", {}), ("carl", "review", {})],
            "approved": [("rita", "submit", {}), ("carl", "review", {}), ("carl", "approve", {})],
        }
        granted = [("dana", "nodes/node-a/accept", {}), ("bert", "nodes/node-b/accept", {})]
        path["granted"] = path["approved"] + granted
        for who, verb, body in path[state]:
            self.step(who, request_id, verb, **body)
        assert self.call("rita", "GET", f"/requests/{request_id}")["state"] == state
        return request_id


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    for fed in federation(tmp_path_factory.mktemp("governed")):
        yield Governed(fed)


def test_full_negotiation_with_each_roles_token(gov: Governed) -> None:
    created = gov.call("rita", "POST", "/requests", {**DRAFT, "tier": 2}, status=201)
    request_id = created["request_id"]
    assert (created["state"], created["tier"], created["requester"]) == ("draft", 2, "rita")
    edited = gov.call("rita", "PUT", f"/requests/{request_id}", DRAFT)
    assert edited["tier"] == 3 and edited["nodes"]["node-b"] == {
        "collections": ["prostate-mri"],
        "decision": "pending",
    }
    gov.step("rita", request_id, "submit")
    gov.step("carl", request_id, "review")
    approved = gov.step("carl", request_id, "approve", reason="sound protocol", grant_days=30)
    assert (approved["state"], approved["duration_days"]) == ("approved", 30)
    assert gov.step("dana", request_id, "nodes/node-a/accept")["state"] == "approved"
    assert request_id in [r["request_id"] for r in gov.inbox("node-b")]
    before = datetime.now().astimezone()
    decided = gov.node_says(
        "node-b", {"request_id": request_id, "decision": "accept", "decided_by": "bea"}
    )
    assert decided["state"] == "granted"
    expires = datetime.fromisoformat(decided["expires_at"])
    assert (
        timedelta(days=30) - timedelta(minutes=1) < expires - before < timedelta(days=30, minutes=1)
    )

    shown = gov.call("rita", "GET", f"/requests/{request_id}")
    steps = [(e["actor"], e["action"], e["to"], e["node"]) for e in shown["history"]]
    assert steps == [
        ("rita", "create", "draft", None),
        ("rita", "edit", "draft", None),
        ("rita", "submit", "submitted", None),
        ("carl", "start_review", "under_review", None),
        ("carl", "approve", "approved", None),
        ("dana", "accept", "approved", "node-a"),
        ("bea@node-b", "accept", "granted", "node-b"),
    ]
    # no node agent runs here: the grants wait at the hub for each node's next poll
    assert [(d["node_id"], d["kind"], d["state"]) for d in shown["deliveries"]] == [
        ("node-a", "grant.apply", "queued"),
        ("node-b", "grant.apply", "queued"),
    ]
    revoked = gov.step("carl", request_id, "revoke", reason="protocol breach")
    assert revoked["state"] == "revoked"
    kinds = {(d["node_id"], d["kind"]) for d in revoked["deliveries"]}
    assert kinds == {(n, k) for n in NODES for k in ("grant.apply", "grant.revoke")}

    # who sees it: the researcher, the committee, the admin, the data holders; not others
    for who in ("rita", "carl", "admin", "dana", "bert"):
        assert request_id in [r["request_id"] for r in gov.call(who, "GET", "/requests")]
    for who in ("oscar", "vic"):
        assert request_id not in [r["request_id"] for r in gov.call(who, "GET", "/requests")]
        refused = gov.send(who, "GET", f"/requests/{request_id}")
        assert refused.status_code == 403 and refused.json()["title"] == "forbidden"
    assert gov.call("dana", "GET", "/me")["nodes"] == ["node-a"]


# (state to reach, who acts, what, body, expected status, words in the problem detail)
REFUSALS = [
    ("draft", "oscar", "submit", {}, 403, "'oscar' may not see access request"),
    ("draft", "carl", "submit", {}, 403, "needs the role researcher"),
    ("draft", "carl", "approve", {}, 409, "cannot approve a request that is draft"),
    ("submitted", "rita", "review", {}, 403, "needs the role access_committee"),
    ("submitted", "dana", "review", {}, 403, "needs the role access_committee"),
    ("submitted", "rita", "submit", {}, 409, "cannot submit a request that is submitted"),
    ("under_review", "rita", "approve", {}, 403, "needs the role access_committee"),
    ("under_review", "vic", "approve", {}, 403, "'vic' may not see access request"),
    ("under_review", "carl", "reject", {}, 409, "'reject' needs a reason"),
    ("under_review", "dana", "nodes/node-a/accept", {}, 409, "cannot accept a request that is"),
    ("approved", "bert", "nodes/node-a/accept", {}, 403, "not a data holder of node 'node-a'"),
    ("approved", "dana", "nodes/node-b/accept", {}, 403, "not a data holder of node 'node-b'"),
    ("approved", "rita", "nodes/node-a/accept", {}, 403, "needs the role data_manager"),
    ("approved", "dana", "nodes/node-a/decline", {}, 409, "'decline' needs a reason"),
    ("approved", "rita", "withdraw", {}, 409, "cannot withdraw a request that is approved"),
    ("granted", "rita", "revoke", {"reason": "x"}, 403, "needs the role access_committee"),
    ("granted", "dana", "revoke", {"reason": "x"}, 403, "needs the role access_committee"),
    ("granted", "carl", "approve", {}, 409, "cannot approve a request that is granted"),
    ("granted", "rita", "grant", {}, 403, "not an admin or committee member"),
    ("granted", "carl", "frobnicate", {}, 400, "unknown action 'frobnicate'"),
]


@pytest.mark.parametrize(("state", "who", "verb", "body", "status", "words"), REFUSALS)
def test_wrong_role_or_state_is_refused_and_changes_nothing(
    gov: Governed, state: str, who: str, verb: str, body: dict[str, Any], status: int, words: str
) -> None:
    request_id = gov.reach(state)
    before = gov.call("admin", "GET", f"/requests/{request_id}")
    answer = gov.send(who, "POST", f"/requests/{request_id}/{verb}", body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words in answer.json()["detail"]
    assert gov.call("admin", "GET", f"/requests/{request_id}") == before


def test_edit_after_submit_unknown_requests_and_bad_tokens(gov: Governed) -> None:
    request_id = gov.reach("submitted")
    late = gov.send("rita", "PUT", f"/requests/{request_id}", DRAFT)
    assert late.status_code == 409 and "cannot edit a request that is submitted" in late.text
    missing = gov.send("carl", "POST", "/requests/no-such-id/review", {})
    assert missing.status_code == 404 and missing.json()["title"] == "request_not_found"
    unknown_node = gov.send("rita", "POST", "/requests", {**DRAFT, "collections": {"x": ["c"]}})
    assert unknown_node.status_code == 404 and "['x']" in unknown_node.json()["detail"]
    assert gov.send("", "GET", "/requests").status_code == 401
    gov.tokens["mallory"] = "ofd_0123456789abcdef_" + "A" * 43
    assert gov.send("mallory", "GET", "/requests").status_code == 401
    denied = gov.send("rita", "POST", "/users", {"user_id": "eve", "roles": ["admin"]})
    assert denied.status_code == 403
    holder = gov.send("admin", "POST", "/users", {"user_id": "eve", "roles": ["data_manager"]})
    assert holder.status_code == 400 and "needs at least one node" in holder.json()["detail"]
    again = gov.send("admin", "POST", "/users", {"user_id": "rita", "roles": ["researcher"]})
    assert again.status_code == 409
    assert "eve" not in [u["user_id"] for u in gov.call("admin", "GET", "/users")]


def test_node_decisions_are_signed_by_that_node(gov: Governed, tmp_path: Path) -> None:
    request_id = gov.reach("approved")
    only_b = {**DRAFT, "collections": {"node-b": ["prostate-mri"]}}
    other = gov.call("rita", "POST", "/requests", only_b, status=201)["request_id"]
    for who, verb in (("rita", "submit"), ("carl", "review"), ("carl", "approve")):
        gov.step(who, other, verb)
    with pytest.raises(ConfigError, match=r"HTTP 409.*'node-a' is not part of request"):
        gov.node_says("node-a", {"request_id": other, "decision": "accept", "decided_by": "x"})
    with pytest.raises(ConfigError, match=r"HTTP 400.*names the data manager"):
        gov.node_says("node-b", {"request_id": other, "decision": "accept"})
    stranger = Signer("node-b", generate_keypair(KeyPaths.in_dir(tmp_path, "x")))
    body = {"request_id": request_id, "decision": "accept", "decided_by": "mallory"}
    forged = httpx.post(
        f"{gov.fed.url}/hub/v1/node/decision",
        content=stranger.sign("test-hub", "decision", body).to_json(),
    )
    assert forged.status_code == 401 and "signature" in forged.json()["title"]
    assert gov.call("carl", "GET", f"/requests/{request_id}")["nodes"]["node-b"]["decision"] == (
        "pending"
    )


def test_hub_killed_mid_negotiation_loses_nothing_and_its_audit_verifies(
    gov: Governed, tmp_path: Path
) -> None:
    sent = gov.reach("approved")  # granted by node-b's signed word, then revoked: two sends
    gov.step("dana", sent, "nodes/node-a/accept")
    gov.node_says("node-b", {"request_id": sent, "decision": "accept", "decided_by": "bea"})
    gov.step("carl", sent, "revoke", reason="study cancelled")
    request_id = gov.reach("approved")
    gov.step("dana", request_id, "nodes/node-a/accept")
    before = gov.call("carl", "GET", f"/requests/{request_id}")
    gov.fed.kill_hub()

    home = gov.fed.root / "hub"
    verified = CliRunner().invoke(app, ["hub", "audit", "verify", str(home)])
    assert verified.exit_code == 0 and "intact" in verified.output, verified.output
    shown = CliRunner().invoke(app, ["hub", "audit", "show", str(home), "--limit", "999", "--json"])
    entries = json.loads(shown.output)
    target = f"access_request:{request_id}"
    rows = [(e["actor"], e["action"]) for e in entries if e["target"] == target]
    sends = {(e["actor"], e["action"]) for e in entries if e["action"].endswith(".send")}
    assert rows == [
        ("rita", "request.create"),
        ("rita", "request.submit"),
        ("carl", "request.start_review"),
        ("carl", "request.approve"),
        ("dana", "request.accept"),
    ]
    assert ("carl", "grant.revoke.send") in sends and ("bea@node-b", "grant.apply.send") in sends

    copy = tmp_path / "hub-copy"
    shutil.copytree(home, copy)
    with duckdb.connect(str(copy / "hub.duckdb")) as tamper:
        tamper.execute(
            "UPDATE audit SET actor = 'mallory' WHERE target = ? AND action = 'request.approve'",
            [f"access_request:{request_id}"],
        )
    caught = CliRunner().invoke(app, ["hub", "audit", "verify", str(copy)])
    assert caught.exit_code == 1 and "content does not match its hash" in caught.output

    gov.fed.start_hub(port=int(gov.fed.url.rsplit(":", 1)[1]))
    after = gov.call("carl", "GET", f"/requests/{request_id}")
    assert after == before and after["state"] == "approved"
    granted = gov.node_says(
        "node-b", {"request_id": request_id, "decision": "accept", "decided_by": "bea"}
    )
    assert granted["state"] == "granted"


def test_the_cli_walks_a_request_and_shows_refusals(gov: Governed) -> None:
    def run(who: str, *args: str) -> Any:
        token = ["--hub", gov.fed.url, "--token", gov.tokens[who]]
        return CliRunner().invoke(app, [*args, *token])

    assert run("admin", "hub", "users", "add", "nina", "--role", "researcher").exit_code == 0
    issued = run("admin", "hub", "users", "token", "nina", "--days", "1")
    gov.tokens["nina"] = issued.output.split()[-1]
    created = run(
        "nina", "hub", "requests", "create", "--project", "LUNG-AI", "--purpose", "nodule model",
        "--collection", "node-a:lung-ct", "--collection", "node-a:lung-pet", "--tier", "3",
        "--cohort", '{"modality": ["CT"]}', "--days", "60",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    request_id = created.output.split()[-1]
    assert run("nina", "hub", "requests", "submit", request_id).exit_code == 0
    refused = run("nina", "hub", "requests", "review", request_id)
    assert isinstance(refused.exception, HubRefusal)
    assert "HTTP 403 forbidden: 'start_review' needs the role access_committee" in str(
        refused.exception
    )
    assert run("carl", "hub", "requests", "review", request_id).exit_code == 0
    approved = run("carl", "hub", "requests", "approve", request_id, "--days", "30")
    assert approved.exit_code == 0 and "approved" in approved.output
    revoked = run("carl", "hub", "requests", "revoke", request_id, "--reason", "study cancelled")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    shown = json.loads(run("nina", "hub", "requests", "show", request_id, "--json").output)
    assert shown["nodes"] == {
        "node-a": {"collections": ["lung-ct", "lung-pet"], "decision": "pending"}
    }
    assert [e["action"] for e in shown["history"]] == [
        "create", "submit", "start_review", "approve", "revoke"
    ]  # fmt: skip
    listed = json.loads(run("nina", "hub", "requests", "list", "--json").output)
    assert [r["request_id"] for r in listed] == [request_id]  # only her own
    table = run("admin", "hub", "requests", "list", "--state", "revoked")
    assert table.exit_code == 0 and "LUNG-AI" in table.output
