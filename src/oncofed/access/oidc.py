"""OpenID Connect bearer tokens: JWTs verified against the configured issuer's JWKS (PyJWT).

The issuer's public keys come from its discovery document (``<issuer>/.well-known/
openid-configuration`` → ``jwks_uri``) or a configured JWKS URL, fetched with httpx and cached.
A token naming an unknown key (``kid``) re-reads the JWKS, at most once per ``min_refresh``
seconds, so that key rotation works and random key ids cannot make the node hammer the issuer.

Only asymmetric signatures are accepted (RSA, RSA-PSS, ECDSA, EdDSA), and each key verifies
only the algorithm it is bound to: ``alg=none`` and HS256-signed-with-the-public-key tokens are
refused. Roles come from a claim (unknown names ignored); scopes are what those roles allow;
grants come from the node's own ``access_grant`` table for the token's user id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import httpx
import jwt

from oncofed.access.policy import ROLE_SCOPES, Principal, Role, Scope
from oncofed.access.store import IdentityStore
from oncofed.errors import AuthError

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")  # fmt: skip
KEY_TYPES = frozenset({"RSA", "EC", "OKP"})  # never "oct": a shared secret is not a public key
LEEWAY_SECONDS = 30
FETCH_TIMEOUT_SECONDS = 5.0
MAX_KEY_AGE_SECONDS = 3600.0  # the JWKS is re-read at least this often
MIN_REFRESH_SECONDS = 30.0  # and at most this often (unknown kids, failed fetches)
MAX_USER_ID = 256
_ROLE_NAMES = frozenset(role.value for role in Role)


@dataclass(frozen=True)
class OidcIdentity:
    """Who a verified token names, and the oncofed roles it carries."""

    user_id: str
    roles: frozenset[Role]

    @property
    def scopes(self) -> frozenset[Scope]:
        """What the roles allow (no roles: no scopes, so endpoints answer 403)."""
        return frozenset().union(*(ROLE_SCOPES[role] for role in self.roles))

    def principal(self, con: duckdb.DuckDBPyConnection) -> Principal:
        """The principal, with the node's grants for this user id; 401 if disabled here."""
        row = con.execute(
            "SELECT disabled FROM app_user WHERE user_id = ?", [self.user_id]
        ).fetchone()
        if row is not None and row[0]:
            raise AuthError(f"user {self.user_id!r} is disabled on this node")
        grants = IdentityStore(con).active_grants(self.user_id)
        return Principal(self.user_id, self.roles, self.scopes, grants)


class OidcVerifier:
    """Verifies bearer JWTs from one issuer against its published keys (thread-safe)."""

    def __init__(
        self,
        issuer: str,
        audience: str | None = None,
        jwks_url: str | None = None,
        roles_claim: str = "roles",
        user_claim: str = "sub",
        *,
        min_refresh: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self.roles_claim, self.user_claim = roles_claim, user_claim
        self.min_refresh, self.clock = min_refresh, clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._failed: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def verify(self, token: str) -> OidcIdentity:
        """The identity in ``token``, or AuthError saying why it is not accepted."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"OIDC token refused: not a JWT ({exc})") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise AuthError(f"OIDC token refused: algorithm {alg!r} is not accepted")
        key = self._key(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"OIDC token refused: {exc}") from exc
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user or len(user) > MAX_USER_ID:
            raise AuthError(f"OIDC token refused: claim {self.user_claim!r} names no user")
        return OidcIdentity(user, _roles(_claim(claims, self.roles_claim)))

    def _key(self, kid: str | None) -> jwt.PyJWK:
        """The issuer's key ``kid`` (None: its only key), re-reading the JWKS when due."""
        with self._lock:
            now = self.clock()
            age = float("inf") if self._fetched_at is None else now - self._fetched_at
            unknown = _pick(self._keys, kid) is None
            if age > MAX_KEY_AGE_SECONDS or (unknown and age >= self.min_refresh):
                self._refresh(now)
            key = _pick(self._keys, kid)
        if key is None:
            named = "names no key id" if kid is None else f"names unknown key {kid!r}"
            raise AuthError(f"OIDC token refused: it {named} of {self.issuer}")
        return key

    def _refresh(self, now: float) -> None:
        """Re-read the JWKS (failures are remembered for ``min_refresh`` seconds)."""
        if self._failed is not None and now - self._failed[0] < self.min_refresh:
            raise AuthError(self._failed[1])
        try:
            url = self.jwks_url or _discover(self.issuer)
            self._keys = _parse_jwks(_get_json(url, "signing keys (JWKS)"))
        except AuthError as exc:
            self._failed = (now, exc.message)
            raise
        self._fetched_at, self._failed = now, None


def _pick(keys: dict[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    """Key ``kid``; a token without a kid may use the issuer's only key."""
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        answer = httpx.get(
            url, timeout=FETCH_TIMEOUT_SECONDS, headers={"Accept": "application/json"}
        )
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AuthError(f"OIDC issuer unavailable: cannot read its {what} at {url}: {exc}") from exc
    if not isinstance(document, dict):
        raise AuthError(f"OIDC issuer unavailable: its {what} at {url} is not a JSON object")
    return document


def _discover(issuer: str) -> str:
    """The ``jwks_uri`` of ``issuer``'s discovery document (which must name the same issuer)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = _get_json(url, "discovery document")
    if document.get("issuer", issuer) != issuer:
        raise AuthError(f"OIDC discovery document at {url} names issuer {document['issuer']!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise AuthError(f"OIDC discovery document at {url} has no jwks_uri")
    return jwks_uri


def _parse_jwks(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """Signature keys by ``kid``; keys of other types or uses, or unreadable ones, are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys")
    for n, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or entry.get("kty") not in KEY_TYPES:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ALGORITHMS:
            keys[str(entry.get("kid", f"#{n}"))] = key
    if not keys:
        raise AuthError("OIDC issuer unavailable: its JWKS holds no usable signature key")
    return keys


def _claim(claims: dict[str, Any], name: str) -> object:
    """A claim by name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: object = claims
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _roles(value: object) -> frozenset[Role]:
    """oncofed roles named by a claim value (a list, or a space-separated string)."""
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    return frozenset(Role(n) for n in names if isinstance(n, str) and n in _ROLE_NAMES)
