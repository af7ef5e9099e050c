"""The hub's node registry: who asked to join, who was approved, and each node's public key.

A node registers with a message signed by the key it registers (proof that it holds the private
key); an admin approves or rejects it. Only approved nodes are senders the hub's verifier knows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.hub.db import from_db, to_db
from oncofed.hub.keys import fingerprint, parse_public_key
from oncofed.hub.signing import utc_now

PENDING, APPROVED, REJECTED, REMOVED = "pending", "approved", "rejected", "removed"
DECISIONS = (APPROVED, REJECTED, REMOVED)
SCHEMA = """CREATE TABLE IF NOT EXISTS node (
    node_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    public_key VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    registered_at TIMESTAMP NOT NULL,
    decided_at TIMESTAMP,
    decided_by VARCHAR
)"""


@dataclass(frozen=True)
class NodeEntry:
    """One registered node."""

    node_id: str
    name: str
    fingerprint: str
    status: str
    registered_at: datetime
    decided_by: str | None


class Registry:
    """Node registrations in the hub database; also the verifier's key ring (approved only)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, lock: threading.Lock) -> None:
        self.con, self.lock = con, lock
        with lock:
            con.execute(SCHEMA)
        self._keys: dict[str, Ed25519PublicKey] = {}

    def register(self, node_id: str, name: str, public_key_pem: str) -> NodeEntry:
        """Record a join request (idempotent for the same key; another key for a known id is
        refused, so nobody can take over a registered node's id)."""
        key = parse_public_key(public_key_pem.encode(), f"public key of node {node_id!r}")
        key_print = fingerprint(key)
        with self.lock:
            row = self.con.execute(
                "SELECT fingerprint FROM node WHERE node_id = ?", [node_id]
            ).fetchone()
            if row is not None and row[0] != key_print:
                raise ConfigError(f"node id {node_id!r} is registered with another key")
            if row is None:
                self.con.execute(
                    "INSERT INTO node VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                    [node_id, name, public_key_pem, key_print, PENDING, to_db(utc_now())],
                )
        return self.get(node_id)

    def decide(self, node_id: str, status: str, actor: str) -> NodeEntry:
        """Approve, reject or remove a node; only an approved node's messages are accepted."""
        if status not in DECISIONS:
            raise ConfigError(f"a node is decided {', '.join(DECISIONS)}, not {status!r}")
        with self.lock:
            found = self.con.execute(
                "UPDATE node SET status = ?, decided_at = ?, decided_by = ? WHERE node_id = ?"
                " RETURNING node_id",
                [status, to_db(utc_now()), actor, node_id],
            ).fetchall()
        if not found:
            raise NodeNotFoundError(f"no node {node_id!r} has asked to join")
        self._keys.pop(node_id, None)
        return self.get(node_id)

    def get(self, node_id: str) -> NodeEntry:
        """One node, or NodeNotFoundError."""
        entries = [e for e in self.entries() if e.node_id == node_id]
        if not entries:
            raise NodeNotFoundError(f"no node {node_id!r} has asked to join")
        return entries[0]

    def entries(self) -> list[NodeEntry]:
        """Every registered node, by id."""
        with self.lock:
            rows = self.con.execute(
                "SELECT node_id, name, fingerprint, status, registered_at, decided_by FROM node"
                " ORDER BY node_id"
            ).fetchall()
        return [NodeEntry(r[0], r[1], r[2], r[3], from_db(r[4]) or utc_now(), r[5]) for r in rows]

    def approved(self) -> list[str]:
        """Ids of the approved nodes."""
        return [e.node_id for e in self.entries() if e.status == APPROVED]

    def public_key(self, sender: str) -> Ed25519PublicKey | None:
        """The key of an approved node (cached), else None: the verifier's key ring."""
        if sender in self._keys:
            return self._keys[sender]
        with self.lock:
            row = self.con.execute(
                "SELECT public_key FROM node WHERE node_id = ? AND status = ?", [sender, APPROVED]
            ).fetchone()
        if row is None:
            return None
        key = parse_public_key(str(row[0]).encode(), f"public key of node {sender!r}")
        self._keys[sender] = key
        return key
