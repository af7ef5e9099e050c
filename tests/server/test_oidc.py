"""OIDC bearer tokens against a real discovery document and JWKS served on 127.0.0.1.

The issuer is a tiny HTTP server started by the test on a random port; its keys (RSA, P-256,
Ed25519) are generated here. Tokens go to a real node server over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conftest import free_port, serving
from oncofed.access.oidc import OidcVerifier
from oncofed.access.store import IdentityStore
from oncofed.catalog.writer import CollectionSpec
from oncofed.errors import AuthError
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService

AUDIENCE = "oncofed-node"
USER = "orcid-0000-0002"
PROBLEM_JSON = "application/problem+json"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Issuer:
    """A tiny OIDC issuer: discovery document + JWKS, and the keys to sign tokens with."""

    url: str
    keys: dict[str, tuple[str, PrivateKey]]  # kid -> (alg, private key)
    documents: dict[str, bytes]
    hits: dict[str, int] = field(default_factory=dict)

    def publish(self, **keys: tuple[str, PrivateKey]) -> None:
        """Add keys to the issuer's JWKS."""
        self.keys.update(keys)
        jwks = [
            {**_jwk(key), "kid": kid, "alg": alg, "use": "sig"}
            for kid, (alg, key) in self.keys.items()
        ]
        self.documents["/jwks"] = json.dumps({"keys": jwks}).encode()

    def token(self, kid: str = "rsa", **claims: Any) -> str:
        """A token signed with key ``kid``; ``claims`` override (None: leave the claim out)."""
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": USER, "iat": now, "exp": now + 300,
                "roles": ["researcher"], **claims}  # fmt: skip
        alg, key = self.keys[kid]
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def _jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half of ``key`` as a JWK."""
    if isinstance(key, rsa.RSAPrivateKey):
        return jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    documents: dict[str, bytes] = {}
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] = hits.get(self.path, 0) + 1
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
        {"issuer": url, "jwks_uri": url + "/jwks"}
    ).encode()
    made = Issuer(url, {}, documents, hits)
    made.publish(
        rsa=("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ec=("ES256", ec.generate_private_key(ec.SECP256R1())),
        ed=("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield made
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class OidcNode:
    """A served node trusting the test issuer, and a node-issued data manager token."""

    url: str
    local_token: str


def make_node(home: Path, **oidc: str) -> NodeService:
    """A node with one collection, a granted and a disabled user, and ``oidc_*`` settings."""
    with Node.init(home) as node:
        node.ensure_collection(CollectionSpec("synth", "synth"))
        node.ensure_collection(CollectionSpec("other", "other"))
        store = IdentityStore(node.catalog.con)
        store.add_user(USER, ["researcher"])
        store.grant(USER, "synth", 3, "admin")
        store.add_user("gone", ["researcher"])
        store.disable_user("gone")
        store.add_user("local", ["data_manager"])
        (home / "local.token").write_text(store.issue_token("local").token, encoding="utf-8")
    config = (home / "oncofed.toml").read_text(encoding="utf-8")
    config += "".join(f'oidc_{name} = "{value}"\n' for name, value in oidc.items())
    (home / "oncofed.toml").write_text(config, encoding="utf-8")
    return NodeService.open(home)


@pytest.fixture(scope="module")
def node(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcNode]:
    home = tmp_path_factory.mktemp("oidc") / "node"
    service = make_node(home, issuer=issuer.url, audience=AUDIENCE)
    with serving(create_app(service)) as url:
        yield OidcNode(url, (home / "local.token").read_text(encoding="utf-8"))
    service.close()


def get(url: str, path: str, token: str) -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def refused(answer: httpx.Response, reason: str = "") -> bool:
    """A 401 problem whose detail mentions ``reason``."""
    return (
        answer.status_code == 401
        and answer.headers["content-type"] == PROBLEM_JSON
        and reason.lower() in answer.json()["detail"].lower()
    )


@pytest.mark.parametrize("kid", ["rsa", "ec", "ed"])
def test_a_valid_token_acts_as_its_user_with_its_roles_and_grants(
    issuer: Issuer, node: OidcNode, kid: str
) -> None:
    token = issuer.token(kid)
    assert get(node.url, "/api/v1/collections", token).status_code == 200
    series = get(node.url, "/api/v1/series", token)  # the tier-3 grant on synth, from the node
    assert series.status_code == 200
    assert get(node.url, '/api/v1/series?where={"collection":["other"]}', token).status_code == 403
    assert get(node.url, "/api/v1/ingest/reports", token).status_code == 403


def test_roles_come_from_the_claim_and_unknown_ones_are_ignored(
    issuer: Issuer, node: OidcNode
) -> None:
    steward = issuer.token(roles=["data_manager", "wizard"], sub="someone-new")
    assert get(node.url, "/api/v1/ingest/reports", steward).status_code == 200
    for roles in (["wizard"], [], None, "", {"admin": True}):
        answer = get(node.url, "/api/v1/collections", issuer.token(roles=roles))
        assert answer.status_code == 403, roles  # a known user without roles: forbidden, not 500
        assert answer.headers["content-type"] == PROBLEM_JSON


def test_node_tokens_still_work_and_disabled_users_stay_out(issuer: Issuer, node: OidcNode) -> None:
    assert get(node.url, "/api/v1/ingest/reports", node.local_token).status_code == 200
    assert refused(get(node.url, "/api/v1/collections", issuer.token(sub="gone")), "disabled")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"iss": "http://127.0.0.1:1/evil"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"aud": None}, "aud"),
        ({"exp": None}, "exp"),
        ({"sub": None}, "names no user"),
        ({"sub": 42}, ""),
    ],
)
def test_bad_claims_are_refused(
    issuer: Issuer, node: OidcNode, claims: dict[str, Any], reason: str
) -> None:
    assert refused(get(node.url, "/api/v1/collections", issuer.token(**claims)), reason)


def test_forged_and_confused_tokens_are_refused(issuer: Issuer, node: OidcNode) -> None:
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": USER, "exp": now + 300,
              "roles": ["admin"]}  # fmt: skip
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, rsa_key = issuer.keys["rsa"]
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    cases = {
        "bad signature": (jwt.encode(claims, other, "RS256", headers={"kid": "rsa"}), "signature"),
        "unknown kid": (jwt.encode(claims, rsa_key, "RS256", headers={"kid": "k9"}), "unknown"),
        "alg none": (jwt.encode(claims, None, "none", headers={"kid": "rsa"}), "algorithm"),
        "HS256 with the public key": (f"{head}.{body}.{_b64(mac)}", "algorithm"),
        "ES256 on the RSA key": (_resigned(issuer, claims, "ES256", "ec", "rsa"), "algorithm"),
        "tampered": (issuer.token()[:-6] + "AAAAAA", "signature"),
        "no kid, several keys": (jwt.encode(claims, rsa_key, "RS256"), "no key id"),
        "garbage": ("garbage", "not a JWT"),
        "three dots": ("a.b.c", "not a JWT"),
    }
    for name, (token, reason) in cases.items():
        assert refused(get(node.url, "/api/v1/collections", token), reason), name


def _resigned(issuer: Issuer, claims: dict[str, Any], alg: str, signer: str, kid: str) -> str:
    """A token signed by key ``signer`` but naming key ``kid``."""
    return jwt.encode(claims, issuer.keys[signer][1], alg, headers={"kid": kid})


def test_unknown_kids_reread_the_jwks_at_most_once_per_interval(issuer: Issuer) -> None:
    clock = [0.0]
    verifier = OidcVerifier(issuer.url, AUDIENCE, min_refresh=30, clock=lambda: clock[0])
    assert verifier.verify(issuer.token()).user_id == USER
    fetched = issuer.hits.get("/jwks", 0)
    for kid in ("k1", "k2", "k3"):
        token = jwt.encode({"iss": issuer.url}, issuer.keys["rsa"][1], "RS256", {"kid": kid})
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(token)
    assert issuer.hits["/jwks"] == fetched  # fetched seconds ago: not again
    issuer.publish(rotated=("ES384", ec.generate_private_key(ec.SECP384R1())))
    clock[0] = 31.0  # the issuer rotated its keys; a token names the new one
    assert verifier.verify(issuer.token("rotated")).user_id == USER
    assert issuer.hits["/jwks"] == fetched + 1


def test_nested_and_string_role_claims(issuer: Issuer) -> None:
    nested = OidcVerifier(issuer.url, AUDIENCE, roles_claim="realm_access.roles")
    token = issuer.token(realm_access={"roles": ["admin", "offline_access"]}, roles=None)
    assert {r.value for r in nested.verify(token).roles} == {"admin"}
    spaced = OidcVerifier(issuer.url, AUDIENCE, user_claim="email")
    identity = spaced.verify(issuer.token(roles="researcher ai_provider", email="a@b.org"))
    assert identity.user_id == "a@b.org"
    assert {r.value for r in identity.roles} == {"researcher", "ai_provider"}


def test_an_unreachable_issuer_is_a_clear_401(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    settings = {
        "JWKS server down": ({"issuer": issuer.url, "jwks_url": down + "/jwks"}, "signing keys"),
        "issuer down": ({"issuer": down}, "discovery document"),
    }
    for name, (oidc, reason) in settings.items():
        service = make_node(tmp_path_factory.mktemp("down") / "node", audience=AUDIENCE, **oidc)
        with serving(create_app(service)) as url:
            for _ in range(2):  # the second answer comes from the remembered failure
                answer = get(url, "/api/v1/collections", issuer.token())
                assert refused(answer, "OIDC issuer unavailable"), (name, answer.text)
                assert reason in answer.json()["detail"], name
            assert httpx.get(url + "/api/v1/collections").status_code == 200  # anonymous: ok
        service.close()


def test_without_oidc_only_node_tokens_are_known(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = make_node(tmp_path_factory.mktemp("plain") / "node")
    with serving(create_app(service)) as url:
        assert refused(get(url, "/api/v1/collections", issuer.token()), "unknown token")
    service.close()
