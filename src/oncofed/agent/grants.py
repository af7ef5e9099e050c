"""Node handlers for grants decided at the hub: ``grant.apply`` and ``grant.revoke``.

The hub sends them when an access request it negotiated is granted, revoked or expires. Each
collection becomes one row of the node's ``access_grant`` table with the id
``<request id>/<collection>``, so a repeated delivery changes nothing, a revocation that
overtakes its grant is kept (the grant, arriving later, stays revoked), and the node's data
manager can still revoke a hub grant locally (``oncofed grants revoke``). The node's own auth
then enforces the rows: tier 3 opens image retrieval for the user, and only until the expiry.
Every change is written to the node's audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from oncofed.access.store import GrantRecord, IdentityStore
from oncofed.agent.handlers import AgentContext, handler
from oncofed.errors import QueryError


def _grants(body: dict[str, Any]) -> list[GrantRecord]:
    """The grant rows a task body stands for; QueryError names what is wrong with it."""
    request_id, user, tier = body.get("request_id"), body.get("user"), body.get("tier")
    collections, expires = body.get("collections"), body.get("expires_at")
    if not isinstance(request_id, str) or not request_id:
        raise QueryError(f"a grant task names its access request, got {request_id!r}")
    if not isinstance(user, str) or not isinstance(tier, int) or isinstance(tier, bool):
        raise QueryError(f"grant {request_id}: user and tier are required, got {user!r}, {tier!r}")
    if not isinstance(collections, list) or not collections:
        raise QueryError(f"grant {request_id}: collections must be a non-empty list")
    try:
        expires_at = datetime.fromisoformat(str(expires))
    except ValueError as exc:
        raise QueryError(f"grant {request_id}: expires_at {expires!r} is not a time") from exc
    return [
        GrantRecord(f"{request_id}/{c}", user, str(c), tier, f"hub:{request_id}", expires_at)
        for c in collections
    ]


def _change(
    ctx: AgentContext,
    body: dict[str, Any],
    action: str,
    write: Callable[[IdentityStore, GrantRecord], bool],
    *,
    need_collections: bool,
) -> list[str]:
    """Write the body's grant rows with ``write`` in one transaction, audit what changed;
    returns the ids of the rows changed."""
    grants = _grants(body)
    with ctx.service.catalog() as catalog:
        if need_collections:
            known = {c.collection_id for c in catalog.collections()}
            missing = sorted({g.collection_id for g in grants} - known)
            if missing:
                raise QueryError(f"grant {body['request_id']}: no collections {missing} here")
        store = IdentityStore(catalog.con)
        catalog.con.execute("BEGIN TRANSACTION")
        try:
            changed = [g.grant_id for g in grants if write(store, g)]
            catalog.con.execute("COMMIT")
        except BaseException:
            catalog.con.execute("ROLLBACK")
            raise
        if changed:
            first = grants[0]
            details = {"grants": changed, "user": first.user_id, "tier": first.tier,
                       "expires_at": first.expires_at.isoformat()}  # fmt: skip
            target = f"access_request/{body['request_id']}"
            ctx.service.node.audit.append(f"hub:{ctx.node_id}", action, target, details)
    return changed


@handler("grant.apply")
def apply_grant(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """Write the grant's rows (all or none: every collection must exist here)."""
    applied = _change(ctx, body, "grant.apply", IdentityStore.put_grant, need_collections=True)
    return {"applied": applied}


@handler("grant.revoke")
def revoke_grant(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """Revoke the grant's rows now (recording them revoked if they never arrived)."""
    revoked = _change(ctx, body, "grant.revoke", IdentityStore.end_grant, need_collections=False)
    return {"revoked": revoked}
