"""OIDC bearer tokens against a real JWKS and discovery document served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import serving
from oncofed.access.store import IdentityStore
from oncofed.catalog.writer import CollectionSpec
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService

AUDIENCE = "oncofed-node"


@dataclass
class Issuer:
    """A tiny OIDC issuer: discovery document + JWKS, and a key to sign tokens with."""

    url: str
    key: rsa.RSAPrivateKey
    server: ThreadingHTTPServer

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "orcid-0000-0002", "iat": now,
                "exp": now + 300, "roles": ["researcher"], **claims}  # fmt: skip
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    documents["/.well-known/openid-configuration"] = json.dumps(
        {"jwks_uri": url + "/jwks"}
    ).encode()
    documents["/jwks"] = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Issuer(url, key, server)
    server.shutdown()


@pytest.fixture(scope="module")
def node_url(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("oidc") / "node"
    with Node.init(home) as node:
        node.ensure_collection(CollectionSpec("synth", "synth"))
        IdentityStore(node.catalog.con).add_user("orcid-0000-0002", ["researcher"])
        IdentityStore(node.catalog.con).grant("orcid-0000-0002", "synth", 3, "admin")
    config = (home / "oncofed.toml").read_text(encoding="utf-8")
    config += f'oidc_issuer = "{issuer.url}"\noidc_audience = "{AUDIENCE}"\n'
    (home / "oncofed.toml").write_text(config, encoding="utf-8")
    service = NodeService.open(home)
    with serving(create_app(service)) as url:
        yield url
    service.close()


def get(url: str, path: str, token: str) -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_valid_token_acts_as_its_user_with_its_roles_and_grants(
    issuer: Issuer, node_url: str
) -> None:
    token = issuer.token()
    assert get(node_url, "/api/v1/collections", token).status_code == 200
    assert get(node_url, "/api/v1/series", token).status_code == 200  # tier-3 grant on synth
    assert get(node_url, "/api/v1/ingest/reports", token).status_code == 403
    no_roles = issuer.token(roles=["wizard"])
    assert get(node_url, "/api/v1/collections", no_roles).status_code == 403


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iss": "http://127.0.0.1:1/evil"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
    ],
)
def test_bad_claims_are_refused(
    issuer: Issuer, node_url: str, claims: dict[str, Any], reason: str
) -> None:
    answer = get(node_url, "/api/v1/collections", issuer.token(**claims))
    assert answer.status_code == 401 and reason in answer.json()["detail"].lower()


def test_forged_and_confused_tokens_are_refused(issuer: Issuer, node_url: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": now + 300}
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
    unknown_kid = jwt.encode(claims, issuer.key, algorithm="RS256", headers={"kid": "k9"})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    tampered = issuer.token()[:-6] + "AAAAAA"
    for token in (forged, unknown_kid, unsigned, tampered, "garbage"):
        answer = get(node_url, "/api/v1/collections", token)
        assert answer.status_code == 401, token
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_unreachable_issuer_is_a_401_not_a_500(tmp_path: Path) -> None:
    from oncofed.access.oidc import OidcVerifier
    from oncofed.errors import AuthError

    verifier = OidcVerifier("http://127.0.0.1:9/none", AUDIENCE)
    with pytest.raises(AuthError, match="discovery document"):
        verifier.verify("a.b.c")
