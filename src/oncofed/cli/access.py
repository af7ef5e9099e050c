"""`oncofed users|tokens|grants ...`: identities and access on a node (all audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


@users.command("add")
def add_user(
    user_id: str,
    role: Annotated[list[str], typer.Option(help=ROLES_HELP)],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    node: NodeOption = Path("."),
) -> None:
    """Create a user."""
    with Node(node) as opened:
        IdentityStore(opened.catalog.con).add_user(user_id, role, name)
        opened.audit.append(opened.actor, "user.add", f"user/{user_id}", {"roles": role})
    console.print(f"user {user_id} created with roles {', '.join(role)}")


@users.command("disable")
def disable_user(user_id: str, node: NodeOption = Path(".")) -> None:
    """Disable a user; their tokens stop working at once."""
    with Node(node) as opened:
        IdentityStore(opened.catalog.con).disable_user(user_id)
        opened.audit.append(opened.actor, "user.disable", f"user/{user_id}")
    console.print(f"user {user_id} disabled")


@tokens.command("issue")
def issue_token(
    user_id: str,
    scope: Annotated[list[str] | None, typer.Option(help=SCOPES_HELP)] = None,
    days: Annotated[float, typer.Option(help="Lifetime in days (at most 366).")] = 30,
    node: NodeOption = Path("."),
) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    with Node(node) as opened:
        issued = IdentityStore(opened.catalog.con).issue_token(user_id, scopes=scope, days=days)
        details = {"token_id": issued.token_id, "scopes": list(issued.scopes)}
        opened.audit.append(opened.actor, "token.issue", f"user/{user_id}", details)
    console.print(f"token {issued.token_id} for {user_id}, expires {issued.expires_at:%Y-%m-%d}")
    typer.echo(issued.token)


@tokens.command("revoke")
def revoke_token(token_id: str, node: NodeOption = Path(".")) -> None:
    """Revoke a token now."""
    with Node(node) as opened:
        IdentityStore(opened.catalog.con).revoke_token(token_id)
        opened.audit.append(opened.actor, "token.revoke", f"token/{token_id}")
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
    with Node(node) as opened:
        store = IdentityStore(opened.catalog.con)
        grant_id = store.grant(user_id, collection, tier, opened.actor, days=days)
        details = {"grant_id": grant_id, "tier": tier, "days": days}
        opened.audit.append(opened.actor, "grant.add", f"collection/{collection}", details)
    console.print(f"grant {grant_id}: {user_id} tier {tier} on {collection} for {days:g} days")


@grants.command("revoke")
def revoke_grant(grant_id: str, node: NodeOption = Path(".")) -> None:
    """Revoke a grant now."""
    with Node(node) as opened:
        IdentityStore(opened.catalog.con).revoke_grant(grant_id)
        opened.audit.append(opened.actor, "grant.revoke", f"grant/{grant_id}")
    console.print(f"grant {grant_id} revoked")
