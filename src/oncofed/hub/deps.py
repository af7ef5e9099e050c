"""FastAPI dependencies of the hub's people routes: the served hub and the bearer-token caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from oncofed.access.policy import Principal
from oncofed.errors import AuthError
from oncofed.hub.service import Hub


def hub_dependency(request: Request) -> Hub:
    """FastAPI dependency: the Hub the app serves (``hub: HubDep`` in a route)."""
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(hub_dependency)]


def caller(hub: HubDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The hub user of the bearer token."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("use 'Authorization: Bearer <token>'")
    return hub.authenticate(authorization.removeprefix("Bearer ").strip())


Caller = Annotated[Principal, Depends(caller)]
