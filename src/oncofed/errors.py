"""The oncofed error hierarchy: each error has a stable code and a message naming the bad input."""

from __future__ import annotations


class OncofedError(Exception):
    """Base of every error oncofed raises on purpose; ``code`` is stable for clients and scripts."""

    code = "oncofed_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(OncofedError):
    """A node or hub configuration is missing or invalid."""

    code = "config_error"


class NodeNotFoundError(ConfigError):
    """A directory is not an oncofed node home."""

    code = "node_not_found"


class SchemaVersionError(OncofedError):
    """A catalog was written by a newer oncofed than this one."""

    code = "schema_too_new"


class QueryError(OncofedError):
    """A cohort query is malformed: unknown field, bad range or bad value."""

    code = "invalid_query"


class StoreError(OncofedError):
    """The content-addressed store could not read or write a blob."""

    code = "store_error"


class IngestError(OncofedError):
    """One input could not be ingested; the run records it and continues."""

    code = "ingest_error"


class QuarantineError(IngestError):
    """The input could not be made safe to store; it is quarantined with this reason."""

    code = "quarantined"


class AuthError(OncofedError):
    """The caller's credentials are missing, malformed, unknown, expired or revoked."""

    code = "unauthorized"


class ForbiddenError(OncofedError):
    """The caller is known but may not do this."""

    code = "forbidden"


class NotFoundError(OncofedError):
    """The named record (an access request, a user) does not exist."""

    code = "not_found"


class ConflictError(OncofedError):
    """The request conflicts with the current state of what it names (e.g. a wrong transition)."""

    code = "conflict"


class ReferenceImportError(OncofedError):
    """A reference metadata import (e.g. the IDC index) failed."""

    code = "import_error"
