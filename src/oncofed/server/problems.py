"""RFC 9457 problem details for every oncofed error the server raises."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from oncofed.errors import (
    AuthError,
    ConfigError,
    ForbiddenError,
    IngestError,
    NodeNotFoundError,
    OncofedError,
    QueryError,
    SchemaVersionError,
    StoreError,
)

PROBLEM_JSON = "application/problem+json"
_STATUS: tuple[tuple[type[OncofedError], int], ...] = (
    (QueryError, 400),
    (AuthError, 401),
    (ForbiddenError, 403),
    (NodeNotFoundError, 404),
    (IngestError, 422),
    (StoreError, 507),
    (SchemaVersionError, 500),
    (ConfigError, 500),
)


def status_for(error: OncofedError) -> int:
    """The HTTP status of an oncofed error (500 for anything unexpected)."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


def problem(status: int, code: str, detail: str, instance: str) -> JSONResponse:
    """A problem-details response."""
    body = {"type": f"urn:oncofed:problem:{code}", "title": code, "status": status}
    body |= {"detail": detail, "instance": instance}
    headers = {"WWW-Authenticate": 'Bearer realm="oncofed"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    """Answer OncofedErrors with problem details instead of a stack trace."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OncofedError)
        return problem(status_for(exc), exc.code, exc.message, request.url.path)

    app.add_exception_handler(OncofedError, handle)
