"""Roles, scopes and the principal a request acts as."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """The roles of DESIGN.md §1."""

    ADMIN = "admin"
    DATA_MANAGER = "data_manager"
    RESEARCHER = "researcher"
    AI_PROVIDER = "ai_provider"
    ACCESS_COMMITTEE = "access_committee"


class Scope(StrEnum):
    """What a token may be used for; a token's scopes are at most its user's."""

    READ_CATALOG = "read:catalog"
    READ_IMAGES = "read:images"
    WRITE_INGEST = "write:ingest"
    ADMIN = "admin"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.DATA_MANAGER: frozenset({Scope.READ_CATALOG, Scope.READ_IMAGES, Scope.WRITE_INGEST}),
    Role.RESEARCHER: frozenset({Scope.READ_CATALOG, Scope.READ_IMAGES}),
    Role.AI_PROVIDER: frozenset({Scope.READ_CATALOG}),
    Role.ACCESS_COMMITTEE: frozenset({Scope.READ_CATALOG}),
}

# Tiers of DESIGN.md §1: what a grant on a collection allows.
TIER_CATALOGUE, TIER_FEDERATED, TIER_TRANSFER = 1, 2, 3
# Roles that see their own node's data without grants.
STEWARD_ROLES = frozenset({Role.ADMIN, Role.DATA_MANAGER})


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user with roles and the scopes of the token used."""

    user_id: str
    roles: frozenset[Role]
    scopes: frozenset[Scope]
    grants: dict[str, int] = field(default_factory=dict)  # collection -> highest tier granted

    @property
    def is_anonymous(self) -> bool:
        """True for callers without a token."""
        return self.user_id == ANONYMOUS_ID

    @property
    def is_steward(self) -> bool:
        """Admins and data managers see and change all of their node's data."""
        return bool(self.roles & STEWARD_ROLES)

    def has(self, scope: Scope) -> bool:
        """Whether the token carries ``scope``."""
        return scope in self.scopes

    def may_retrieve(self, collection_id: str) -> bool:
        """Whether images and series-level data of ``collection_id`` may leave to this caller."""
        if not self.has(Scope.READ_IMAGES):
            return False
        return self.is_steward or self.grants.get(collection_id, 0) >= TIER_TRANSFER

    def sees_exact_counts(self) -> bool:
        """Stewards see exact counts; everyone else gets disclosure-controlled ones."""
        return self.is_steward and self.has(Scope.READ_CATALOG)


ANONYMOUS_ID = "anonymous"
ANONYMOUS = Principal(ANONYMOUS_ID, frozenset(), frozenset({Scope.READ_CATALOG}))
