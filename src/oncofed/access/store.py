"""Users, API tokens and access grants, kept in the node catalog.

Tokens look like ``ofd_<id>_<secret>``; only the SHA-256 of the secret is stored (the secret is
256 random bits, so a fast hash is as strong as a slow one here), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from oncofed.access.policy import ROLE_SCOPES, Principal, Role, Scope
from oncofed.errors import AuthError, ConfigError

TOKEN_PREFIX = "ofd_"
_TOKEN = re.compile(r"^ofd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class IssuedToken:
    """A token as handed to its user: the secret string is shown once, never stored."""

    token_id: str
    user_id: str
    token: str
    scopes: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class GrantRecord:
    """A grant decided elsewhere (by a hub's access negotiation), as a node stores it."""

    grant_id: str
    user_id: str
    collection_id: str
    tier: int
    granted_by: str
    expires_at: datetime

    def row(self) -> list[object]:
        """The values of the ``access_grant`` columns it fills, in table order."""
        return [self.grant_id, self.user_id, self.collection_id, self.tier, self.granted_by,
                self.expires_at]  # fmt: skip


def _check_grant(grant: GrantRecord) -> None:
    if not _USER_ID.match(grant.user_id):
        raise ConfigError(f"invalid user id {grant.user_id!r}: letters, digits and ._@- only")
    if grant.tier not in (2, 3):
        raise ConfigError(f"grants are for tier 2 (federated) or 3 (transfer), not {grant.tier}")
    if grant.expires_at.tzinfo is None:
        raise ConfigError(f"grant {grant.grant_id!r}: expiry {grant.expires_at} has no time zone")


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _roles(names: Iterable[str]) -> frozenset[Role]:
    try:
        return frozenset(Role(name) for name in names)
    except ValueError as exc:
        valid = ", ".join(r.value for r in Role)
        raise ConfigError(f"unknown role in {list(names)}; valid roles: {valid}") from exc


class IdentityStore:
    """CRUD and authentication over the ``app_user``, ``api_token`` and ``access_grant`` tables."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def add_user(self, user_id: str, roles: Iterable[str], display_name: str = "") -> None:
        """Create a user with roles; the id must be new."""
        if not _USER_ID.match(user_id):
            raise ConfigError(f"invalid user id {user_id!r}: letters, digits and ._@- only")
        parsed = _roles(roles)
        if not parsed:
            raise ConfigError(f"user {user_id!r} needs at least one role")
        if self.has_user(user_id):
            raise ConfigError(f"user {user_id!r} exists already")
        self.con.execute(
            "INSERT INTO app_user (user_id, display_name, roles) VALUES (?, ?, ?)",
            [user_id, display_name or user_id, sorted(r.value for r in parsed)],
        )

    def has_user(self, user_id: str) -> bool:
        """Whether ``user_id`` exists (enabled or not)."""
        return self._user_row(user_id) is not None

    def disable_user(self, user_id: str) -> None:
        """Disable a user: every token of theirs stops working."""
        self._require_user(user_id)
        self.con.execute("UPDATE app_user SET disabled = TRUE WHERE user_id = ?", [user_id])

    def issue_token(
        self, user_id: str, *, scopes: Iterable[str] | None = None, days: float = 30
    ) -> IssuedToken:
        """A new token for ``user_id`` with ``scopes`` (default: all its roles allow)."""
        roles, disabled = self._require_user(user_id)
        if disabled:
            raise ConfigError(f"user {user_id!r} is disabled")
        allowed = frozenset().union(*(ROLE_SCOPES[r] for r in roles))
        try:
            wanted = allowed if scopes is None else frozenset(Scope(s) for s in scopes)
        except ValueError as exc:
            raise ConfigError(
                f"unknown scope in {scopes}; valid: {[s.value for s in Scope]}"
            ) from exc
        if not wanted <= allowed:
            extra = sorted(s.value for s in wanted - allowed)
            raise ConfigError(f"user {user_id!r}'s roles do not allow scopes {extra}")
        if not 0 < days <= 366:
            raise ConfigError(f"token lifetime must be between 0 and 366 days, got {days}")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        expires = _now() + timedelta(days=days)
        names = tuple(sorted(s.value for s in wanted))
        self.con.execute(
            "INSERT INTO api_token (token_id, user_id, secret_sha256, scopes, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [token_id, user_id, _digest(secret), list(names), expires],
        )
        return IssuedToken(token_id, user_id, f"ofd_{token_id}_{secret}", names, expires)

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token now."""
        found = self.con.execute(
            "UPDATE api_token SET revoked_at = now() WHERE token_id = ? AND revoked_at IS NULL"
            " RETURNING token_id",
            [token_id],
        ).fetchall()
        if not found:
            raise ConfigError(f"no active token {token_id!r}")

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token stands for; AuthError says why when it stands for none."""
        return self.authenticate_until(token)[0]

    def authenticate_until(self, token: str) -> tuple[Principal, datetime]:
        """:meth:`authenticate`, and when the answer changes by itself at the latest (the token
        or one of the user's grants expires); one query."""
        match = _TOKEN.match(token)
        if not match:
            raise AuthError("malformed token: expected ofd_<id>_<secret>")
        token_id, secret = match.groups()
        row = self.con.execute(
            "SELECT t.secret_sha256, t.scopes, CAST(t.expires_at AS VARCHAR),"
            " t.revoked_at IS NOT NULL, u.roles, u.disabled, u.user_id, t.expires_at <= now(),"
            " epoch(t.expires_at), (SELECT list([g.collection_id, CAST(g.tier AS VARCHAR)])"
            " FROM access_grant g WHERE g.user_id = u.user_id AND g.revoked_at IS NULL"
            " AND g.expires_at > now()), (SELECT epoch(min(g.expires_at)) FROM access_grant g"
            " WHERE g.user_id = u.user_id AND g.revoked_at IS NULL AND g.expires_at > now())"
            " FROM api_token t JOIN app_user u USING (user_id) WHERE t.token_id = ?",
            [token_id],
        ).fetchone()
        if row is None or not hmac.compare_digest(str(row[0]), _digest(secret)):
            raise AuthError("unknown token")
        if row[3]:
            raise AuthError(f"token {token_id} was revoked")
        if row[7]:
            raise AuthError(f"token {token_id} expired at {row[2]}")
        if row[5]:
            raise AuthError(f"user {row[6]!r} is disabled")
        grants: dict[str, int] = {}
        for collection, tier in row[9] or ():
            grants[str(collection)] = max(int(tier), grants.get(str(collection), 0))
        principal = Principal(
            user_id=str(row[6]),
            roles=_roles(row[4]),
            scopes=frozenset(Scope(s) for s in row[1]),
            grants=grants,
        )
        until = min(float(t) for t in (row[8], row[10]) if t is not None)
        return principal, datetime.fromtimestamp(until, UTC)

    def grant(
        self, user_id: str, collection_id: str, tier: int, granted_by: str, *, days: float = 90
    ) -> str:
        """Grant ``user_id`` tier ``tier`` access to a collection; returns the grant id."""
        self._require_user(user_id)
        if tier not in (2, 3):
            raise ConfigError(f"grants are for tier 2 (federated) or 3 (transfer), not {tier}")
        known = self.con.execute(
            "SELECT count(*) FROM collection WHERE collection_id = ?", [collection_id]
        ).fetchone()
        if not known or not known[0]:
            raise ConfigError(f"no collection {collection_id!r} on this node")
        grant_id = secrets.token_hex(8)
        self.con.execute(
            "INSERT INTO access_grant (grant_id, user_id, collection_id, tier, granted_by,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            [grant_id, user_id, collection_id, tier, granted_by, _now() + timedelta(days=days)],
        )
        return grant_id

    def revoke_grant(self, grant_id: str) -> None:
        """Revoke a grant now."""
        found = self.con.execute(
            "UPDATE access_grant SET revoked_at = now() WHERE grant_id = ? AND revoked_at IS NULL"
            " RETURNING grant_id",
            [grant_id],
        ).fetchall()
        if not found:
            raise ConfigError(f"no active grant {grant_id!r}")

    def put_grant(self, grant: GrantRecord) -> bool:
        """Write a grant under its own id (one a hub chose) unless that id exists already: a
        grant delivered twice, or revoked before it arrived, stays as it is. Returns whether it
        was written. The user need not exist here yet (OIDC users never do)."""
        _check_grant(grant)
        written = self.con.execute(
            "INSERT INTO access_grant (grant_id, user_id, collection_id, tier, granted_by,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (grant_id) DO NOTHING"
            " RETURNING grant_id",
            grant.row(),
        ).fetchall()
        return bool(written)

    def end_grant(self, grant: GrantRecord) -> bool:
        """Revoke the grant with ``grant``'s id now, or record it as revoked if it never arrived
        (so a late delivery cannot bring it back). Returns whether anything changed."""
        _check_grant(grant)
        changed = self.con.execute(
            "INSERT INTO access_grant (grant_id, user_id, collection_id, tier, granted_by,"
            " expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, now())"
            " ON CONFLICT (grant_id) DO UPDATE SET revoked_at = now()"
            " WHERE access_grant.revoked_at IS NULL RETURNING grant_id",
            grant.row(),
        ).fetchall()
        return bool(changed)

    def active_grants(self, user_id: str) -> dict[str, int]:
        """Collection → highest tier currently granted to ``user_id``."""
        rows = self.con.execute(
            "SELECT collection_id, max(tier) FROM access_grant WHERE user_id = ?"
            " AND revoked_at IS NULL AND expires_at > now() GROUP BY 1",
            [user_id],
        ).fetchall()
        return {str(c): int(t) for c, t in rows}

    def _user_row(self, user_id: str) -> tuple[list[str], bool] | None:
        row = self.con.execute(
            "SELECT roles, disabled FROM app_user WHERE user_id = ?", [user_id]
        ).fetchone()
        return (list(row[0]), bool(row[1])) if row else None

    def _require_user(self, user_id: str) -> tuple[frozenset[Role], bool]:
        row = self._user_row(user_id)
        if row is None:
            raise ConfigError(f"no user {user_id!r}")
        return _roles(row[0]), row[1]
