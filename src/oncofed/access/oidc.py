"""OpenID Connect bearer tokens: JWTs verified against the configured issuer's JWKS (PyJWT).

The issuer's keys are fetched from its discovery document (or a configured JWKS URL), cached,
and re-fetched when a token names an unknown key. Roles come from a claim; unknown role names
are ignored; grants come from the node's own grant table for that user id.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt

from oncofed.access.policy import Role
from oncofed.errors import AuthError

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA", "PS256"]
LEEWAY_SECONDS = 30
FETCH_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class OidcIdentity:
    """Who a verified token names, and the oncofed roles it carries."""

    user_id: str
    roles: frozenset[Role]


@dataclass
class OidcVerifier:
    """Verifies bearer JWTs from one issuer."""

    issuer: str
    audience: str | None = None
    jwks_url: str | None = None
    roles_claim: str = "roles"
    user_claim: str = "sub"

    @cached_property
    def _keys(self) -> jwt.PyJWKClient:
        url = self.jwks_url or _discover_jwks_url(self.issuer)
        return jwt.PyJWKClient(url, cache_keys=True, timeout=FETCH_TIMEOUT_SECONDS)

    def verify(self, token: str) -> OidcIdentity:
        """The identity in ``token``, or AuthError saying why it is not accepted."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", self.user_claim]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError(f"cannot fetch the signing keys of {self.issuer}: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise AuthError(f"OIDC token refused: {exc}") from exc
        return OidcIdentity(str(claims[self.user_claim]), _roles(claims.get(self.roles_claim)))


def _roles(value: object) -> frozenset[Role]:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return frozenset(Role(n) for n in names if isinstance(n, str) and n in Role._value2member_map_)


def _discover_jwks_url(issuer: str) -> str:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:
            document = json.loads(answer.read())
        return str(document["jwks_uri"])
    except (OSError, ValueError, KeyError) as exc:
        raise AuthError(f"cannot read the OIDC discovery document at {url}: {exc}") from exc
