"""Verified tokens are remembered for a few seconds, and forgotten on any change the server
makes to the catalog: a revoked token or grant stops working for the very next request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conftest import serving
from oncofed.access.cache import PrincipalCache
from oncofed.access.policy import Principal
from oncofed.access.store import IdentityStore
from oncofed.catalog.writer import CollectionSpec
from oncofed.errors import AuthError
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[NodeService]:
    with Node.init(tmp_path / "node") as node:
        IdentityStore(node.catalog.con).add_user("alice", ["researcher"])
    with NodeService.open(tmp_path / "node") as opened:
        yield opened


def _issue(service: NodeService, days: float = 1) -> tuple[str, str]:
    with service.catalog() as catalog:
        issued = IdentityStore(catalog.con).issue_token("alice", days=days)
    return issued.token_id, issued.token


def _counted(service: NodeService) -> list[str]:
    """Patch the service's token check to record each query it makes."""
    calls: list[str] = []
    check = service._check_token

    def counting(token: str) -> tuple[Principal, datetime]:
        calls.append(token)
        return check(token)

    service._check_token = counting  # type: ignore[method-assign]
    return calls


def test_a_verified_token_is_answered_without_a_query(service: NodeService) -> None:
    _, token = _issue(service)
    calls = _counted(service)
    first = service.authenticate(token)
    assert service.authenticate(token) == first and first.user_id == "alice"
    assert len(calls) == 1
    with pytest.raises(AuthError):  # a wrong secret for the same token id is never remembered
        service.authenticate(token[:-4] + "AAAA")


def test_revoking_a_token_in_the_server_takes_effect_at_once(service: NodeService) -> None:
    token_id, token = _issue(service)
    service.authenticate(token)
    with service.catalog() as catalog:
        IdentityStore(catalog.con).revoke_token(token_id)
    with pytest.raises(AuthError, match="revoked"):
        service.authenticate(token)


def test_revoking_a_grant_in_the_server_takes_effect_at_once(service: NodeService) -> None:
    _, token = _issue(service)
    with service.catalog() as catalog:
        service.node.ensure_collection(CollectionSpec("c", "c"))
        grant = IdentityStore(catalog.con).grant("alice", "c", 3, "admin")
    assert service.authenticate(token).grants == {"c": 3}
    with service.catalog() as catalog:
        IdentityStore(catalog.con).revoke_grant(grant)
    assert service.authenticate(token).grants == {}


def test_an_entry_never_outlives_the_token(service: NodeService) -> None:
    _, token = _issue(service, days=1.5 / 86400)  # expires in 1.5 s
    calls = _counted(service)
    service.authenticate(token)
    service.authenticate(token)
    assert len(calls) == 1
    time.sleep(1.6)
    with pytest.raises(AuthError, match="expired"):
        service.authenticate(token)


def test_an_answer_older_than_an_invalidation_is_not_remembered() -> None:
    cache = PrincipalCache(ttl_s=60)
    alice = Principal(user_id="alice", roles=frozenset(), scopes=frozenset(), grants={})
    later = datetime.now(UTC) + timedelta(days=1)

    def racing(token: str) -> tuple[Principal, datetime]:
        cache.invalidate()  # a revocation committed while this check was reading
        return alice, later

    assert cache.verify("ofd_x", racing) == alice
    assert cache.get("ofd_x") is None
    assert cache.verify("ofd_x", lambda token: (alice, later)) == alice
    assert cache.get("ofd_x") == alice


def test_the_ttl_bounds_an_entry() -> None:
    cache = PrincipalCache(ttl_s=0.2)
    alice = Principal(user_id="alice", roles=frozenset(), scopes=frozenset(), grants={})
    cache.verify("ofd_x", lambda token: (alice, datetime.now(UTC) + timedelta(days=1)))
    assert cache.get("ofd_x") == alice
    time.sleep(0.3)
    assert cache.get("ofd_x") is None


def test_a_revoked_token_gets_401_on_the_next_request(service: NodeService) -> None:
    token_id, token = _issue(service)
    headers = {"Authorization": f"Bearer {token}"}
    with serving(create_app(service)) as url:
        assert httpx.get(f"{url}/api/v1/collections", headers=headers).status_code == 200
        with service.catalog() as catalog:
            IdentityStore(catalog.con).revoke_token(token_id)
        assert httpx.get(f"{url}/api/v1/collections", headers=headers).status_code == 401
