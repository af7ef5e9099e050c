"""A node's membership of a hub: its key pair, the hub's pinned identity, joining.

``<node>/keys/node.key.pem`` signs everything the node sends; ``<node>/hub.json`` records the hub
URL, the hub's id and public key as pinned at join time (trust on first use, or checked against
a fingerprint given by the hub's operator) and the node's id at the hub.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.hub.keys import (
    KeyPaths,
    fingerprint,
    generate_keypair,
    load_private_key,
    parse_public_key,
    public_pem,
)
from oncofed.hub.nonces import NonceCache
from oncofed.hub.signing import Message, Signer, StaticKeyRing, Verifier
from oncofed.storage.atomic import write_atomic

MEMBERSHIP_FILE = "hub.json"
TIMEOUT = httpx.Timeout(10.0)


@dataclass(frozen=True)
class Membership:
    """Where the hub is and who it is."""

    hub_url: str
    hub_id: str
    hub_public_key: str
    node_id: str

    def write(self, home: Path) -> None:
        write_atomic(home / MEMBERSHIP_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, home: Path) -> Membership:
        path = home / MEMBERSHIP_FILE
        if not path.is_file():
            raise NodeNotFoundError(f"{home} has not joined a hub (run `oncofed node join URL`)")
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc


class HubChannel:
    """Signed request/reply with the hub: requests signed by the node, replies verified against
    the pinned hub key (replayed or forged replies are refused)."""

    def __init__(self, home: Path, membership: Membership, client: httpx.Client) -> None:
        self.membership, self.client = membership, client
        self.signer = Signer(membership.node_id, node_key(home))
        hub_key = parse_public_key(membership.hub_public_key.encode(), "the pinned hub key")
        self.nonces = NonceCache(home / "hub-nonces.sqlite")
        self.verifier = Verifier(
            membership.node_id, StaticKeyRing({membership.hub_id: hub_key}), self.nonces
        )

    def call(
        self, path: str, kind: str, body: dict[str, Any], reply: str, timeout: float = 10.0
    ) -> Message:
        envelope = self.signer.sign(self.membership.hub_id, kind, body)
        response = self.client.post(
            f"{self.membership.hub_url}/hub/v1/{path}",
            content=envelope.to_json(),
            headers={"content-type": "application/json"},
            timeout=timeout,
        )
        if response.status_code != 200:
            raise ConfigError(
                f"hub {self.membership.hub_url} refused {kind}: HTTP {response.status_code}"
                f" {response.text[:300]}"
            )
        return self.verifier.verify(response.content, reply)

    def close(self) -> None:
        self.nonces.close()


def node_key(home: Path) -> Ed25519PrivateKey:
    """The node's signing key (made on first use)."""
    paths = KeyPaths.in_dir(home / "keys", "node")
    return load_private_key(paths.private) if paths.private.exists() else generate_keypair(paths)


def join(
    home: Path,
    hub_url: str,
    node_id: str,
    *,
    name: str,
    hub_fingerprint: str | None = None,
    client: httpx.Client | None = None,
) -> str:
    """Ask ``hub_url`` to let this node join; returns the registration status ('pending' until an
    admin approves). The hub's key is pinned in ``hub.json``."""
    hub_url = hub_url.rstrip("/")
    http = client or httpx.Client(timeout=TIMEOUT)
    try:
        identity = http.get(f"{hub_url}/hub/v1/identity").raise_for_status().json()
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach hub {hub_url}: {exc}") from exc
    hub_key = parse_public_key(str(identity["public_key"]).encode(), f"{hub_url}'s key")
    if hub_fingerprint and fingerprint(hub_key) != hub_fingerprint:
        raise ConfigError(
            f"hub {hub_url} presents key {fingerprint(hub_key)}, not {hub_fingerprint}: refusing"
        )
    pinned = Membership.read(home) if (home / MEMBERSHIP_FILE).exists() else None
    if pinned and pinned.hub_public_key != identity["public_key"]:
        raise ConfigError(f"hub {hub_url} presents another key than the one pinned in hub.json")
    membership = Membership(hub_url, str(identity["hub_id"]), str(identity["public_key"]), node_id)
    channel = HubChannel(home, membership, http)
    try:
        public = public_pem(node_key(home).public_key()).decode()
        reply = channel.call("join", "join", {"name": name, "public_key": public}, "joined")
    finally:
        channel.close()
        if client is None:
            http.close()
    membership.write(home)
    return str(reply.body.get("status"))
