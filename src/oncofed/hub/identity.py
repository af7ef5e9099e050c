"""Hub users: their roles, the nodes each data holder speaks for, and their bearer tokens.

Users and tokens live in the hub database in the same tables, and through the same
:class:`IdentityStore`, as a node's (SHA-256-hashed, scoped, expiring, revocable tokens). The hub
adds one table: which nodes a data holder (role ``data_manager``) decides for. Every change is
written to the hub's audit chain with the admin who made it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oncofed.access.policy import Principal, Role
from oncofed.access.store import IssuedToken
from oncofed.errors import ConflictError, NotFoundError, QueryError
from oncofed.hub.negotiation_rules import HubActor
from oncofed.hub.service import Hub

_SCHEMA = """CREATE TABLE IF NOT EXISTS data_holder (
    user_id VARCHAR NOT NULL,
    node_id VARCHAR NOT NULL,
    PRIMARY KEY (user_id, node_id)
)"""


@dataclass(frozen=True)
class HubUser:
    """A hub user as admins see them (never their tokens)."""

    user_id: str
    display_name: str
    roles: tuple[str, ...]
    nodes: tuple[str, ...]
    disabled: bool


class HubIdentities:
    """Users, data holders and tokens of one hub; every change audited."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        with hub.lock:
            hub.con.execute(_SCHEMA)

    def add_user(
        self,
        user_id: str,
        roles: Iterable[str],
        *,
        by: str,
        name: str = "",
        nodes: Iterable[str] = (),
    ) -> HubUser:
        """Create a user; a data holder (``data_manager``) names the registered nodes they
        decide for, and only data holders name nodes."""
        roles, nodes = sorted(set(roles)), sorted(set(nodes))
        holder = Role.DATA_MANAGER.value in roles
        if holder and not nodes:
            raise QueryError(f"data holder {user_id!r} needs at least one node")
        if nodes and not holder:
            raise QueryError(f"only data holders (role data_manager) hold nodes, not {user_id!r}")
        known = {entry.node_id for entry in self.hub.registry.entries()}
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise NotFoundError(f"nodes {unknown} are not registered at this hub")
        if any(u.user_id == user_id for u in self.users()):
            raise ConflictError(f"hub user {user_id!r} exists already")
        con = self.hub.con
        with self.hub.lock:
            con.execute("BEGIN TRANSACTION")
            try:
                self.hub.identities.add_user(user_id, roles, name)
                for node in nodes:
                    con.execute("INSERT INTO data_holder VALUES (?, ?)", [user_id, node])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self.hub.audit(by, "user.add", f"user/{user_id}", {"roles": roles, "nodes": nodes})
        return self.user(user_id)

    def issue_token(self, user_id: str, *, by: str, days: float = 30) -> IssuedToken:
        """A new bearer token for ``user_id`` (shown once; only its hash is kept)."""
        if self.user(user_id).disabled:
            raise ConflictError(f"hub user {user_id!r} is disabled")
        with self.hub.lock:
            issued = self.hub.identities.issue_token(user_id, days=days)
        details = {"token_id": issued.token_id, "expires_at": issued.expires_at.isoformat()}
        self.hub.audit(by, "token.issue", f"user/{user_id}", details)
        return issued

    def disable_user(self, user_id: str, *, by: str) -> None:
        """Disable a user: their tokens stop working at once."""
        self.user(user_id)
        with self.hub.lock:
            self.hub.identities.disable_user(user_id)
        self.hub.audit(by, "user.disable", f"user/{user_id}")

    def user(self, user_id: str) -> HubUser:
        """One user, or NotFoundError."""
        found = [u for u in self.users() if u.user_id == user_id]
        if not found:
            raise NotFoundError(f"no hub user {user_id!r}")
        return found[0]

    def users(self) -> list[HubUser]:
        """Every user, by id."""
        with self.hub.lock:
            rows = self.hub.con.execute(
                "SELECT u.user_id, u.display_name, u.roles, u.disabled,"
                " list(h.node_id ORDER BY h.node_id) FILTER (WHERE h.node_id IS NOT NULL)"
                " FROM app_user u LEFT JOIN data_holder h USING (user_id)"
                " GROUP BY ALL ORDER BY u.user_id"
            ).fetchall()
        return [
            HubUser(str(r[0]), str(r[1]), tuple(sorted(r[2])), tuple(r[4] or ()), bool(r[3]))
            for r in rows
        ]


def hub_actor(hub: Hub, principal: Principal) -> HubActor:
    """Who a token's user acts as in access negotiation: roles, and the nodes they hold."""
    with hub.lock:
        rows = hub.con.execute(
            "SELECT node_id FROM data_holder WHERE user_id = ?", [principal.user_id]
        ).fetchall()
    return HubActor(principal.user_id, principal.roles, frozenset(str(r[0]) for r in rows))
