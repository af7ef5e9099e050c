"""`oncofed users|tokens|grants ...`: identities and access on a node (all audited)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from oncofed.access.policy import Role, Scope
from oncofed.access.store import IdentityStore
from oncofed.cli.options import NodeOption
from oncofed.node import Node

users = typer.Typer(help="Users and their roles.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)
grants = typer.Typer(help="Access grants per collection (tier 2 or 3).", no_args_is_help=True)
console = Console()
ROLES_HELP = f"Role(s): {', '.join(r.value for r in Role)}."
SCOPES_HELP = f"Scopes (default: all the roles allow): {', '.join(s.value for s in Scope)}."


@dataclass
class _Change:
    """An identity change in progress: the store, who makes it, what to audit."""

    store: IdentityStore
    actor: str
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _audited(node: Path, action: str, target: str) -> Iterator[_Change]:
    """Open the node, let the block change identities, then audit the change."""
    with Node(node) as opened:
        change = _Change(IdentityStore(opened.catalog.con), opened.actor)
        yield change
        opened.audit.append(opened.actor, action, target, change.details)


@users.command("add")
def add_user(
    user_id: str,
    role: Annotated[list[str], typer.Option(help=ROLES_HELP)],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    node: NodeOption = Path("."),
) -> None:
    """Create a user."""
    with _audited(node, "user.add", f"user/{user_id}") as change:
        change.store.add_user(user_id, role, name)
        change.details["roles"] = role
    console.print(f"user {user_id} created with roles {', '.join(role)}")


@users.command("disable")
def disable_user(user_id: str, node: NodeOption = Path(".")) -> None:
    """Disable a user; their tokens stop working at once."""
    with _audited(node, "user.disable", f"user/{user_id}") as change:
        change.store.disable_user(user_id)
    console.print(f"user {user_id} disabled")


@tokens.command("issue")
def issue_token(
    user_id: str,
    scope: Annotated[list[str] | None, typer.Option(help=SCOPES_HELP)] = None,
    days: Annotated[float, typer.Option(help="Lifetime in days (at most 366).")] = 30,
    node: NodeOption = Path("."),
) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    with _audited(node, "token.issue", f"user/{user_id}") as change:
        issued = change.store.issue_token(user_id, scopes=scope, days=days)
        change.details.update(token_id=issued.token_id, scopes=list(issued.scopes))
    console.print(f"token {issued.token_id} for {user_id}, expires {issued.expires_at:%Y-%m-%d}")
    typer.echo(issued.token)


@tokens.command("revoke")
def revoke_token(token_id: str, node: NodeOption = Path(".")) -> None:
    """Revoke a token now."""
    with _audited(node, "token.revoke", f"token/{token_id}") as change:
        change.store.revoke_token(token_id)
    console.print(f"token {token_id} revoked")


@grants.command("add")
def add_grant(
    user_id: str,
    collection: str,
    tier: Annotated[int, typer.Option(help="2 = federated, 3 = transfer (image retrieval).")] = 3,
    days: Annotated[float, typer.Option(help="Lifetime in days.")] = 90,
    node: NodeOption = Path("."),
) -> None:
    """Grant a user access to a collection."""
    with _audited(node, "grant.add", f"collection/{collection}") as change:
        grant_id = change.store.grant(user_id, collection, tier, change.actor, days=days)
        change.details.update(grant_id=grant_id, user=user_id, tier=tier, days=days)
    console.print(f"grant {grant_id}: {user_id} tier {tier} on {collection} for {days:g} days")


@grants.command("revoke")
def revoke_grant(grant_id: str, node: NodeOption = Path(".")) -> None:
    """Revoke a grant now."""
    with _audited(node, "grant.revoke", f"grant/{grant_id}") as change:
        change.store.revoke_grant(grant_id)
    console.print(f"grant {grant_id} revoked")
