"""`oncofed hub users|requests|audit ...` and `oncofed node requests ...`: governed access.

People work against a running hub with their bearer token (``--token`` or ``ONCOFED_HUB_TOKEN``);
a node's data manager decides through the node, which signs the decision with its key.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from oncofed.access.policy import Role
from oncofed.cli.audit import print_entries, report_verified
from oncofed.cli.hub import HubUrl, Token
from oncofed.cli.options import JsonOption
from oncofed.errors import ConfigError, OncofedError

users_app = typer.Typer(help="Hub users, their roles and tokens (admin).", no_args_is_help=True)
requests_app = typer.Typer(
    help="Access requests: create, submit, review, decide, grant, revoke.", no_args_is_help=True
)
audit_app = typer.Typer(help="The hub's hash-chained audit log.", no_args_is_help=True)
node_requests_app = typer.Typer(
    help="Access requests naming this node; decisions are signed by the node.",
    no_args_is_help=True,
)
console = Console()
Reason = Annotated[str, typer.Option(help="Why (required to reject, decline and revoke).")]
RequestId = Annotated[str, typer.Argument(help="The access request id.")]
NodeHome = Annotated[Path, typer.Option("--node", "-n", help="Node home folder.")]
Person = Annotated[
    str | None, typer.Option("--as", help="The data manager deciding (default: you).")
]


class HubRefusal(OncofedError):
    """The hub answered with a problem (its status, code and detail are in the message)."""

    code = "hub_refused"


def _call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    """JSON from the hub API, or HubRefusal carrying its problem details."""
    try:
        answer = httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach {url}: {exc}") from exc
    if answer.status_code >= 400:
        try:
            problem = answer.json()
            text = f"{problem.get('title', 'error')}: {problem.get('detail', answer.text)}"
        except ValueError:
            text = answer.text[:300]
        raise HubRefusal(f"HTTP {answer.status_code} {text}")
    return answer.json()


# --- users ----------------------------------------------------------------------------------


@users_app.command("add")
def add_user(
    user_id: Annotated[str, typer.Argument(help="The new user's id.")],
    hub: HubUrl,
    token: Token,
    role: Annotated[
        list[str], typer.Option(help=f"Role (repeatable): {', '.join(r.value for r in Role)}.")
    ],
    node: Annotated[
        list[str] | None, typer.Option(help="A node this data holder decides for (repeatable).")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a hub user (admin)."""
    body = {"user_id": user_id, "roles": role, "nodes": node or [], "name": name}
    user = _call("POST", f"{hub}/hub/v1/users", token, body)
    nodes = f" for nodes {', '.join(user['nodes'])}" if user["nodes"] else ""
    console.print(f"user {user['user_id']} created with roles {', '.join(user['roles'])}{nodes}")


@users_app.command("token")
def issue_token(
    user_id: Annotated[str, typer.Argument(help="Whose token.")],
    hub: HubUrl,
    token: Token,
    days: Annotated[float, typer.Option(help="Lifetime in days (at most 366).")] = 30,
) -> None:
    """Issue a token for a user (admin); it is printed once, the hub keeps only its hash."""
    issued = _call("POST", f"{hub}/hub/v1/users/{user_id}/tokens", token, {"days": days})
    console.print(f"token {issued['token_id']} for {user_id}, expires {issued['expires_at']}")
    typer.echo(issued["token"])


@users_app.command("list")
def list_users(hub: HubUrl, token: Token, as_json: JsonOption = False) -> None:
    """Every hub user with roles and nodes (admin)."""
    users = _call("GET", f"{hub}/hub/v1/users", token)
    if as_json:
        typer.echo(json.dumps(users, indent=2))
        return
    table = Table(title=f"users of {hub}")
    for column in ("user", "roles", "nodes", "disabled"):
        table.add_column(column)
    for u in users:
        table.add_row(
            u["user_id"], ", ".join(u["roles"]), ", ".join(u["nodes"]), str(u["disabled"])
        )
    console.print(table)


# --- access requests ------------------------------------------------------------------------


def _collections(pairs: list[str]) -> dict[str, list[str]]:
    """``node:collection`` options as node -> collections."""
    found: dict[str, list[str]] = {}
    for pair in pairs:
        node, sep, collection = pair.partition(":")
        if not sep or not node or not collection:
            raise ConfigError(f"--collection {pair!r}: expected NODE:COLLECTION")
        found.setdefault(node, []).append(collection)
    return found


@requests_app.command("create")
def create(
    hub: HubUrl,
    token: Token,
    project: Annotated[str, typer.Option(help="Project name.")],
    purpose: Annotated[str, typer.Option(help="What the data is for.")],
    collection: Annotated[list[str], typer.Option(help="NODE:COLLECTION asked for (repeatable).")],
    tier: Annotated[int, typer.Option(help="2 = federated, 3 = transfer.")] = 2,
    cohort: Annotated[str, typer.Option(help="Cohort filter as JSON.")] = "{}",
    days: Annotated[int, typer.Option(help="How long access is asked for.")] = 365,
) -> None:
    """Create a draft request (researcher); prints its id."""
    try:
        where = json.loads(cohort)
    except ValueError as exc:
        raise ConfigError(f"--cohort is not JSON: {exc}") from exc
    body = {"project": project, "purpose": purpose, "cohort": where, "tier": tier,
            "collections": _collections(collection), "duration_days": days}  # fmt: skip
    request = _call("POST", f"{hub}/hub/v1/requests", token, body)
    console.print(f"draft request for {project}: {request['state']}")
    typer.echo(request["request_id"])


def _step(hub: str, token: str, request_id: str, verb: str, body: dict[str, Any]) -> None:
    request = _call("POST", f"{hub}/hub/v1/requests/{request_id}/{verb}", token, body)
    granted = request["state"] == "granted"
    expires = f", expires {request['expires_at']}" if granted else ""
    console.print(f"request {request_id}: {request['state']}{expires}")


@requests_app.command("submit")
def submit(request_id: RequestId, hub: HubUrl, token: Token) -> None:
    """Submit your draft to the access committee."""
    _step(hub, token, request_id, "submit", {})


@requests_app.command("withdraw")
def withdraw(request_id: RequestId, hub: HubUrl, token: Token) -> None:
    """Withdraw your request (until the committee decides)."""
    _step(hub, token, request_id, "withdraw", {})


@requests_app.command("review")
def review(request_id: RequestId, hub: HubUrl, token: Token) -> None:
    """Take a submitted request under review (committee)."""
    _step(hub, token, request_id, "review", {})


@requests_app.command("approve")
def approve(
    request_id: RequestId,
    hub: HubUrl,
    token: Token,
    reason: Reason = "",
    days: Annotated[int | None, typer.Option(help="Grant for fewer days than requested.")] = None,
) -> None:
    """Approve a request under review (committee); the data holders decide next."""
    _step(hub, token, request_id, "approve", {"reason": reason, "grant_days": days})


@requests_app.command("reject")
def reject(request_id: RequestId, hub: HubUrl, token: Token, reason: Reason) -> None:
    """Reject a request under review (committee)."""
    _step(hub, token, request_id, "reject", {"reason": reason})


@requests_app.command("revoke")
def revoke(request_id: RequestId, hub: HubUrl, token: Token, reason: Reason) -> None:
    """Revoke approved or granted access (admin or committee); nodes are told at once."""
    _step(hub, token, request_id, "revoke", {"reason": reason})


@requests_app.command("grant")
def grant(request_id: RequestId, hub: HubUrl, token: Token) -> None:
    """Send a granted request's grants (or a revoked one's revocations) again to the nodes
    whose delivery failed or timed out (admin or committee), and show the deliveries."""
    request = _call("POST", f"{hub}/hub/v1/requests/{request_id}/grant", token)
    _print_deliveries(request)


@requests_app.command("list")
def list_requests(
    hub: HubUrl,
    token: Token,
    state: Annotated[str | None, typer.Option(help="Only requests in this state.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The requests you may see."""
    query = f"?state={state}" if state else ""
    requests = _call("GET", f"{hub}/hub/v1/requests{query}", token)
    if as_json:
        typer.echo(json.dumps(requests, indent=2))
        return
    _print_requests(requests, f"access requests at {hub}")


@requests_app.command("show")
def show(request_id: RequestId, hub: HubUrl, token: Token, as_json: JsonOption = False) -> None:
    """One request: what it asks, each node's decision, its history and grant deliveries."""
    request = _call("GET", f"{hub}/hub/v1/requests/{request_id}", token)
    if as_json:
        typer.echo(json.dumps(request, indent=2))
        return
    console.print(
        f"[bold]{request['project']}[/] ({request['request_id']}) by {request['requester']}:"
        f" tier {request['tier']}, {request['state']}, expires {request['expires_at'] or '-'}"
    )
    console.print(f"purpose: {request['purpose']}\ncohort: {json.dumps(request['cohort'])}")
    history = Table(title="history")
    for column in ("#", "time", "actor", "action", "from", "to", "node", "reason"):
        history.add_column(column)
    for e in request["history"]:
        history.add_row(str(e["seq"]), e["time"][:19], e["actor"], e["action"],
                        e["from"] or "", e["to"], e["node"] or "", e["reason"])  # fmt: skip
    console.print(history)
    _print_deliveries(request)


def _print_requests(requests: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("request", "project", "requester", "tier", "state", "nodes", "expires"):
        table.add_column(column)
    for r in requests:
        nodes = ", ".join(f"{n}: {v['decision']}" for n, v in r["nodes"].items())
        table.add_row(r["request_id"], r["project"], r["requester"], str(r["tier"]), r["state"],
                      nodes, r["expires_at"] or "")  # fmt: skip
    console.print(table)


def _print_deliveries(request: dict[str, Any]) -> None:
    table = Table(title=f"grant deliveries of {request['request_id']}")
    for column in ("node", "task", "state", "error"):
        table.add_column(column)
    for d in request["deliveries"]:
        table.add_row(d["node_id"], d["kind"], d["state"], d["error"] or "")
    console.print(table)


@audit_app.command("verify")
def verify(
    home: Annotated[Path, typer.Argument(help="Hub home (hub stopped).")] = Path("."),
) -> None:
    """Check that no hub audit entry was edited, removed or reordered; exit 1 if one was."""
    from oncofed.hub.audit import hub_audit

    with hub_audit(home) as log:
        breaks, count = log.verify(), len(log.entries())
    report_verified("hub audit log", breaks, count)


@audit_app.command("show")
def show_audit(
    home: Annotated[Path, typer.Argument(help="Hub home (hub stopped).")] = Path("."),
    since: Annotated[int, typer.Option(help="Entries after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Print hub audit entries in order."""
    from oncofed.hub.audit import hub_audit

    with hub_audit(home) as log:
        entries = log.entries(since=since, limit=limit)
    print_entries(entries, "hub audit log", as_json=as_json, details_width=80)


# --- a node's decisions ---------------------------------------------------------------------


def _node_call(home: Path, path: str, kind: str, body: dict[str, Any], reply: str) -> Any:
    """A signed request from the node at ``home`` to its hub, and the hub's verified reply."""
    from oncofed.agent.membership import HubChannel, Membership

    membership = Membership.read(home)
    with httpx.Client(timeout=30) as client:
        channel = HubChannel(home, membership, client)
        try:
            return channel.call(path, kind, body, reply).body
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach hub {membership.hub_url}: {exc}") from exc
        finally:
            channel.close()


@node_requests_app.command("list")
def node_list(home: NodeHome = Path("."), as_json: JsonOption = False) -> None:
    """Requests that name this node (from approval on), with this node's decision."""
    requests = _node_call(home, "node/requests", "requests", {}, "requests")["requests"]
    if as_json:
        typer.echo(json.dumps(requests, indent=2))
        return
    _print_requests(requests, "access requests naming this node")


def _decide(home: Path, request_id: str, decision: str, reason: str, person: str | None) -> None:
    body = {"request_id": request_id, "decision": decision, "reason": reason,
            "decided_by": person or getpass.getuser()}  # fmt: skip
    request = _node_call(home, "node/decision", "decision", body, "decided")
    console.print(f"request {request_id}: {decision} sent; the request is {request['state']}")


@node_requests_app.command("accept")
def node_accept(
    request_id: RequestId, home: NodeHome = Path("."), reason: Reason = "", person: Person = None
) -> None:
    """Accept a request for this node: its grant will be applied here."""
    _decide(home, request_id, "accept", reason, person)


@node_requests_app.command("decline")
def node_decline(
    request_id: RequestId, reason: Reason, home: NodeHome = Path("."), person: Person = None
) -> None:
    """Decline a request for this node."""
    _decide(home, request_id, "decline", reason, person)
