"""The hub: its home folder (settings, key pair, database, nonces, audit head) and the parts
that work on it (registry, broker, identities, audit, public catalogue).

Layout of a hub home::

    hub.toml        name, default search deadline, how long a silent node counts as online
    hub.duckdb      nodes, users and tokens, audit log, public catalogue
    broker.sqlite   jobs and tasks (see oncofed.hub.broker for why SQLite)
    nonces.sqlite   message nonces seen (replay protection)
    keys/           hub.key.pem (0600), hub.pub.pem
    audit.head      the newest audit entry (catches removal of the newest entries)
"""

from __future__ import annotations

import json
import threading
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from oncofed.access.policy import Principal, Role
from oncofed.access.store import IdentityStore, IssuedToken
from oncofed.catalog.audit import AuditLog
from oncofed.catalog.schema import MIGRATIONS
from oncofed.closing import Closing
from oncofed.disclosure import QueryBudget
from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.hub import db
from oncofed.hub.broker import Broker
from oncofed.hub.keys import (
    KeyPaths,
    fingerprint,
    generate_keypair,
    load_private_key,
    parse_public_key,
    public_pem,
)
from oncofed.hub.nonces import NonceCache
from oncofed.hub.registry import Registry
from oncofed.hub.signing import Message, Signer, StaticKeyRing, Verifier, parse_envelope, utc_now
from oncofed.storage.atomic import write_atomic

SETTINGS_FILE = "hub.toml"
ADMIN_USER = "hub-admin"
_IDENTITY_TABLES = ("app_user", "api_token", "access_grant")
_CATALOGUE = """CREATE TABLE IF NOT EXISTS catalogue (
    node_id VARCHAR PRIMARY KEY,
    updated_at TIMESTAMP NOT NULL,
    collections VARCHAR NOT NULL
)"""


@dataclass(frozen=True)
class HubSettings:
    """What ``hub.toml`` holds."""

    name: str
    search_deadline_s: float = 5.0
    online_window_s: float = 60.0
    queries_per_day: int = 500  # federated searches per user per UTC day

    def write(self, home: Path) -> None:
        write_atomic(home / SETTINGS_FILE, tomli_w.dumps(self.__dict__))

    @classmethod
    def read(cls, home: Path) -> HubSettings:
        path = home / SETTINGS_FILE
        if not path.is_file():
            raise NodeNotFoundError(f"{home} is not an oncofed hub (no {SETTINGS_FILE})")
        try:
            return cls(**tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, TypeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc


class Hub(Closing):
    """An opened hub home. Database calls are serialised by one lock."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home)
        self.settings = HubSettings.read(self.home)
        self.key = load_private_key(self._keys().private)
        self.con = db.connect(self.home / "hub.duckdb")
        self.lock = threading.Lock()
        with self.lock:
            self._create_tables()
        self.registry = Registry(self.con, self.lock)
        self.broker = Broker(self.home / "broker.sqlite")
        self.identities = IdentityStore(self.con)
        self.audit_log = AuditLog(self.con, self.home / "audit.head")
        self.nonces = NonceCache(self.home / "nonces.sqlite")
        self.search_budget = QueryBudget(
            self.home / "query-budget.sqlite", self.settings.queries_per_day, place="this hub"
        )
        self.signer = Signer(self.settings.name, self.key)
        self.verifier = Verifier(self.settings.name, self.registry, self.nonces)
        self._last_seen: dict[str, datetime] = {}
        self._polling: dict[str, int] = {}

    @classmethod
    def init(cls, home: Path | str, *, name: str = "hub") -> tuple[Hub, IssuedToken]:
        """Create a hub home; returns the hub and the admin's first token (shown once)."""
        home = Path(home)
        if (home / SETTINGS_FILE).exists():
            raise ConfigError(f"{home} is a hub already")
        home.mkdir(parents=True, exist_ok=True)
        generate_keypair(KeyPaths.in_dir(home / "keys", "hub"))
        HubSettings(name=name).write(home)
        hub = cls(home)
        with hub.lock:
            hub.identities.add_user(ADMIN_USER, [Role.ADMIN], "hub administrator")
            token = hub.identities.issue_token(ADMIN_USER, days=366)
        hub.audit("system", "init", f"hub/{name}")
        return hub, token

    @property
    def name(self) -> str:
        return self.settings.name

    def identity(self) -> dict[str, str]:
        """What a joining node pins: the hub's name, public key and its fingerprint."""
        public = self.key.public_key()
        return {
            "hub_id": self.name,
            "public_key": public_pem(public).decode(),
            "fingerprint": fingerprint(public),
        }

    def authenticate(self, token: str) -> Principal:
        """The hub user a bearer token stands for."""
        with self.lock:
            return self.identities.authenticate(token)

    def audit(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        """Append to the hub's hash-chained audit log."""
        with self.lock:
            self.audit_log.append(actor, action, target, details)

    def verify(self, raw: bytes, kind: str) -> Message:
        """A message from an approved node (see :class:`Verifier` for every refusal)."""
        message = self.verifier.verify(raw, kind)
        self.seen(message.sender)
        return message

    def verify_registration(self, raw: bytes) -> Message:
        """A join request: signed by the very key it registers (proof of possession)."""
        envelope = parse_envelope(raw)
        key_pem = envelope.body.get("public_key")
        if not isinstance(key_pem, str):
            raise ConfigError("a join request carries the node's public_key (PEM)")
        key = parse_public_key(key_pem.encode(), f"public key of {envelope.sender!r}")
        verifier = Verifier(self.name, StaticKeyRing({envelope.sender: key}), self.nonces)
        return verifier.verify(raw, "join")

    def seen(self, node_id: str) -> None:
        self._last_seen[node_id] = utc_now()

    def polling(self, node_id: str, delta: int) -> None:
        """Count a node's long polls in flight (a node waiting in a poll is online)."""
        self._polling[node_id] = self._polling.get(node_id, 0) + delta

    def online(self, node_id: str) -> bool:
        """Whether the node polls now or did within the online window."""
        if self._polling.get(node_id, 0) > 0:
            return True
        last = self._last_seen.get(node_id)
        window = timedelta(seconds=self.settings.online_window_s)
        return last is not None and utc_now() - last <= window

    def store_catalogue(self, node_id: str, collections: list[dict[str, Any]]) -> None:
        """Replace a node's entries in the public catalogue."""
        with self.lock:
            self.con.execute(
                "INSERT OR REPLACE INTO catalogue VALUES (?, ?, ?)",
                [node_id, db.to_db(utc_now()), json.dumps(collections)],
            )

    def catalogue(self) -> list[dict[str, Any]]:
        """Every approved node's Tier-1 collections with protected counts."""
        approved = set(self.registry.approved())
        with self.lock:
            rows = self.con.execute(
                "SELECT node_id, CAST(updated_at AS VARCHAR), collections FROM catalogue"
                " ORDER BY node_id"
            ).fetchall()
        return [
            {"node": r[0], "updated_at": r[1], "collections": json.loads(r[2])}
            for r in rows
            if r[0] in approved
        ]

    def close(self) -> None:
        self.nonces.close()
        self.search_budget.close()
        self.broker.close()
        with self.lock:
            self.con.close()

    def _keys(self) -> KeyPaths:
        return KeyPaths.in_dir(self.home / "keys", "hub")

    def _create_tables(self) -> None:
        """Identity and audit tables as the node catalog defines them, and the catalogue."""
        for migration in MIGRATIONS:
            for statement in migration.statements:
                words = statement.split()
                if words[:2] == ["CREATE", "TABLE"] and words[2] in (*_IDENTITY_TABLES, "audit"):
                    self.con.execute(
                        statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
                    )
        self.con.execute(_CATALOGUE)
