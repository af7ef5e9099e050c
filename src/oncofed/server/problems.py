"""RFC 9457 problem details for every oncofed error the server raises."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from oncofed.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    IngestError,
    NodeNotFoundError,
    NotFoundError,
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
    (NotFoundError, 404),
    (ConflictError, 409),
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


def _validation_detail(exc: RequestValidationError) -> str:
    """The invalid request parts, one per line: where, then what is wrong."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(lines) or "the request is invalid"


def install(app: FastAPI) -> None:
    """Answer every error (ours, request validation, routing) with problem details."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OncofedError)
        return problem(status_for(exc), exc.code, exc.message, request.url.path)

    async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem(422, "invalid_request", _validation_detail(exc), request.url.path)

    async def handle_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = f"http_{exc.status_code}"
        answer = problem(exc.status_code, code, str(exc.detail), request.url.path)
        answer.headers.update(exc.headers or {})
        return answer

    app.add_exception_handler(OncofedError, handle)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(HTTPException, handle_http)
