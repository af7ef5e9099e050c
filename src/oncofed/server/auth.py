"""Who is calling: bearer tokens → principals, and the checks endpoints ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from oncofed.access.oidc import OidcVerifier
from oncofed.access.policy import ANONYMOUS, Principal, Scope
from oncofed.access.store import TOKEN_PREFIX
from oncofed.errors import AuthError, ForbiddenError
from oncofed.server.service import NodeService


async def service(request: Request) -> NodeService:
    """The node this app serves."""
    served: NodeService = request.app.state.service
    return served


Service = Annotated[NodeService, Depends(service)]


async def principal(request: Request, node: Service) -> Principal:
    """The caller: anonymous without an Authorization header, else its bearer token's user.

    ``ofd_...`` tokens are the node's own (a token verified in the last seconds is answered
    without a query, see :meth:`NodeService.authenticate`); anything else is an OIDC JWT when
    an issuer is set up.
    """
    header = request.headers.get("authorization")
    if header is None:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("use 'Authorization: Bearer <token>'")
    if token.startswith(TOKEN_PREFIX):
        cached = node.principals.get(token)
        if cached is not None:
            return cached
        return await run_in_threadpool(node.authenticate, token)
    return await run_in_threadpool(_oidc_principal, request, node, token)


def _oidc_principal(request: Request, node: NodeService, token: str) -> Principal:
    verifier = _oidc(request, node)
    if verifier is None:
        raise AuthError("unknown token: not an oncofed token (ofd_...), and no OIDC issuer is set")
    identity = verifier.verify(token)
    with node.connection() as con:
        return identity.principal(con)


def _oidc(request: Request, node: NodeService) -> OidcVerifier | None:
    """The app's OIDC verifier, made on first use from the node settings (None: not set up)."""
    settings = node.node.settings
    if settings.oidc_issuer is None:
        return None
    verifier: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    if verifier is None:
        verifier = OidcVerifier(
            settings.oidc_issuer,
            settings.oidc_audience,
            settings.oidc_jwks_url,
            settings.oidc_roles_claim,
            settings.oidc_user_claim,
        )
        request.app.state.oidc = verifier
    return verifier


Caller = Annotated[Principal, Depends(principal)]


def require_scope(caller: Principal, scope: Scope) -> None:
    """403 unless the caller's token carries ``scope`` (401 for anonymous callers)."""
    if caller.has(scope):
        return
    if caller.is_anonymous:
        raise AuthError(f"this needs a token with scope {scope.value}")
    raise ForbiddenError(f"user {caller.user_id!r}: token lacks scope {scope.value}")


def require_steward(caller: Principal) -> None:
    """403 unless the caller is an admin or data manager of this node."""
    if caller.is_anonymous:
        raise AuthError("this needs a data manager's or admin's token")
    if not caller.is_steward:
        raise ForbiddenError(f"user {caller.user_id!r} is not a data manager or admin here")


def slide_access(request: Request, node: Service, caller: Caller) -> None:
    """Slide tiles are images: only callers who may retrieve the slide's collection see them."""
    slide_id = request.path_params.get("slide_id")
    if slide_id is None:  # static viewer assets
        return
    require_scope(caller, Scope.READ_IMAGES)
    with node.connection() as con:
        row = con.execute(
            "SELECT collection_id FROM slide WHERE slide_id = ?", [slide_id]
        ).fetchone()
    if row is not None and not caller.may_retrieve(str(row[0])):
        raise ForbiddenError(f"user {caller.user_id!r} holds no transfer grant for {row[0]!r}")
