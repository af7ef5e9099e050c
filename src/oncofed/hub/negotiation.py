"""Access requests and their negotiation, persisted in the hub's DuckDB database.

Every transition runs in one transaction: it checks the rules of :mod:`negotiation_rules`
against the stored state, updates the request and appends an event to its history, and returns
that event for the audit log. Nothing lives only in memory, so a hub restart loses nothing.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from oncofed.access.policy import TIER_FEDERATED, TIER_TRANSFER
from oncofed.catalog.catalog import canonical_filter
from oncofed.catalog.filters import parse_filter
from oncofed.errors import QueryError
from oncofed.hub.db import from_db, to_db
from oncofed.hub.errors import RequestNotFoundError, TransitionError
from oncofed.hub.negotiation_rules import (
    NODE_ACTIONS,
    RULES,
    SYSTEM,
    Action,
    Decision,
    HubActor,
    State,
    after_decisions,
    check,
)
from oncofed.hub.signing import Clock, utc_now

MAX_DAYS = 3 * 365
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS access_request (
        request_id VARCHAR PRIMARY KEY,
        project VARCHAR NOT NULL,
        purpose VARCHAR NOT NULL,
        requester VARCHAR NOT NULL,
        tier INTEGER NOT NULL,
        cohort VARCHAR NOT NULL,
        duration_days INTEGER NOT NULL,
        state VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        expires_at TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS access_request_node (
        request_id VARCHAR NOT NULL,
        node_id VARCHAR NOT NULL,
        collections VARCHAR[] NOT NULL,
        decision VARCHAR NOT NULL,
        PRIMARY KEY (request_id, node_id)
    )""",
    """CREATE TABLE IF NOT EXISTS access_request_event (
        request_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        time TIMESTAMP NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        node_id VARCHAR,
        from_state VARCHAR,
        to_state VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        PRIMARY KEY (request_id, seq)
    )""",
)
_REQUEST_COLUMNS = (
    "request_id, project, purpose, requester, tier, cohort, duration_days, state,"
    " created_at, updated_at, expires_at"
)


@dataclass(frozen=True)
class RequestDraft:
    """What a researcher asks for: data of ``collections`` (per node) at ``tier``, for a time."""

    project: str
    purpose: str
    cohort: Mapping[str, Any]
    collections: Mapping[str, Sequence[str]]
    tier: int
    duration_days: int = 365


@dataclass(frozen=True)
class AccessRequest:
    """A request as stored, with each node's decision."""

    request_id: str
    project: str
    purpose: str
    requester: str
    tier: int
    cohort: dict[str, Any]
    duration_days: int
    state: State
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    collections: dict[str, tuple[str, ...]]
    decisions: dict[str, Decision]

    def active(self, now: datetime) -> bool:
        """Whether the grant is in force at ``now`` (granted and not past its expiry)."""
        return self.state is State.GRANTED and self.expires_at is not None and now < self.expires_at

    def granted_collections(self) -> dict[str, tuple[str, ...]]:
        """The collections covered per node: those of the nodes that accepted."""
        return {
            node: names
            for node, names in self.collections.items()
            if self.decisions[node] is Decision.ACCEPTED
        }


@dataclass(frozen=True)
class NegotiationEvent:
    """One transition, as written to the request history and the audit log."""

    request_id: str
    seq: int
    time: datetime
    actor: str
    action: Action
    from_state: State | None
    to_state: State
    reason: str = ""
    node: str | None = None

    @property
    def target(self) -> str:
        """The audit target naming the request."""
        return f"access_request:{self.request_id}"

    def details(self) -> dict[str, Any]:
        """The audit details: states, node, reason and time."""
        return {
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value,
            "node": self.node,
            "reason": self.reason,
            "time": self.time.isoformat(),
        }


class Negotiations:
    """Create and move access requests; every method that changes one returns its event."""

    def __init__(self, con: duckdb.DuckDBPyConnection, clock: Clock = utc_now) -> None:
        self._con = con
        self._clock = clock
        self._lock = threading.Lock()
        for statement in _SCHEMA:
            con.execute(statement)

    def create(self, actor: HubActor, draft: RequestDraft) -> NegotiationEvent:
        """A new draft request owned by ``actor``."""
        check(Action.CREATE, actor, None, actor.user_id)
        cohort, collections = _validate(draft)
        request_id = str(uuid.uuid4())
        now = self._clock()
        with self._transaction() as con:
            con.execute(
                f"INSERT INTO access_request ({_REQUEST_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [request_id, draft.project.strip(), draft.purpose.strip(), actor.user_id,
                 draft.tier, json.dumps(cohort, sort_keys=True), draft.duration_days,
                 State.DRAFT.value, to_db(now), to_db(now)],
            )  # fmt: skip
            _put_nodes(con, request_id, collections)
            return self._record(con, request_id, actor, Action.CREATE, None, State.DRAFT, now)

    def edit(self, actor: HubActor, request_id: str, draft: RequestDraft) -> NegotiationEvent:
        """Replace what a draft asks for (only its researcher, only while it is a draft)."""
        cohort, collections = _validate(draft)
        now = self._clock()
        with self._transaction() as con:
            request = self._get(con, request_id)
            check(Action.EDIT, actor, request.state, request.requester)
            con.execute(
                "UPDATE access_request SET project = ?, purpose = ?, tier = ?, cohort = ?,"
                " duration_days = ?, updated_at = ? WHERE request_id = ?",
                [draft.project.strip(), draft.purpose.strip(), draft.tier,
                 json.dumps(cohort, sort_keys=True), draft.duration_days, to_db(now), request_id],
            )  # fmt: skip
            con.execute("DELETE FROM access_request_node WHERE request_id = ?", [request_id])
            _put_nodes(con, request_id, collections)
            return self._record(con, request_id, actor, Action.EDIT, State.DRAFT, State.DRAFT, now)

    def act(
        self,
        actor: HubActor,
        action: Action,
        request_id: str,
        *,
        reason: str = "",
        node: str | None = None,
        grant_days: int | None = None,
    ) -> NegotiationEvent:
        """Take ``action`` on a request: ``node`` for accept/decline, ``grant_days`` (at most
        the requested duration) optionally for approve."""
        if action in (Action.CREATE, Action.EDIT, Action.EXPIRE):
            raise TransitionError(f"{action.value!r} is not taken through act()")
        if grant_days is not None and action is not Action.APPROVE:
            raise TransitionError("grant_days is only given when approving")
        now = self._clock()
        with self._transaction() as con:
            request = self._get(con, request_id)
            rule = check(action, actor, request.state, request.requester, reason, node)
            target = rule.target
            if action in NODE_ACTIONS:
                target = self._decide(con, request, action, node, now)
            elif action is Action.APPROVE and grant_days is not None:
                self._set_duration(con, request, grant_days)
            assert target is not None
            con.execute(
                "UPDATE access_request SET state = ?, updated_at = ? WHERE request_id = ?",
                [target.value, to_db(now), request_id],
            )
            return self._record(
                con, request_id, actor, action, request.state, target, now, reason, node
            )

    def expire_due(self) -> list[NegotiationEvent]:
        """Expire every grant whose time is up; returns one event per expired request."""
        now = self._clock()
        rule = RULES[Action.EXPIRE]
        (source,) = rule.sources
        assert rule.target is not None
        with self._transaction() as con:
            due = con.execute(
                "SELECT request_id FROM access_request WHERE state = ? AND expires_at <= ?"
                " ORDER BY expires_at, request_id",
                [source.value, to_db(now)],
            ).fetchall()
            events = []
            for (request_id,) in due:
                con.execute(
                    "UPDATE access_request SET state = ?, updated_at = ? WHERE request_id = ?",
                    [rule.target.value, to_db(now), request_id],
                )
                events.append(
                    self._record(
                        con, request_id, SYSTEM, Action.EXPIRE, source, rule.target, now,
                        "grant reached its expiry",
                    )
                )  # fmt: skip
            return events

    def get(self, request_id: str) -> AccessRequest:
        """One request with its node decisions."""
        with self._lock:
            return self._get(self._con, request_id)

    def requests(self, state: State | None = None) -> list[AccessRequest]:
        """All requests (optionally in one state), oldest first."""
        with self._lock:
            rows = self._con.execute(
                "SELECT request_id FROM access_request WHERE ? IS NULL OR state = ?"
                " ORDER BY created_at, request_id",
                [state and state.value] * 2,
            ).fetchall()
            return [self._get(self._con, str(row[0])) for row in rows]

    def history(self, request_id: str) -> list[NegotiationEvent]:
        """The events of a request, in order."""
        with self._lock:
            self._get(self._con, request_id)
            rows = self._con.execute(
                "SELECT request_id, seq, time, actor, action, from_state, to_state, reason,"
                " node_id FROM access_request_event WHERE request_id = ? ORDER BY seq",
                [request_id],
            ).fetchall()
        return [_event(row) for row in rows]

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except BaseException:
                self._con.rollback()
                raise
            self._con.commit()

    def _get(self, con: duckdb.DuckDBPyConnection, request_id: str) -> AccessRequest:
        row = con.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM access_request WHERE request_id = ?", [request_id]
        ).fetchone()
        if row is None:
            raise RequestNotFoundError(f"no access request with id {request_id!r}")
        nodes = con.execute(
            "SELECT node_id, collections, decision FROM access_request_node"
            " WHERE request_id = ? ORDER BY node_id",
            [request_id],
        ).fetchall()
        created, updated, expires = (from_db(v) for v in row[8:11])
        assert created is not None and updated is not None
        return AccessRequest(
            request_id=row[0], project=row[1], purpose=row[2], requester=row[3], tier=row[4],
            cohort=json.loads(row[5]), duration_days=row[6], state=State(row[7]),
            created_at=created, updated_at=updated, expires_at=expires,
            collections={n: tuple(c) for n, c, _ in nodes},
            decisions={n: Decision(d) for n, _, d in nodes},
        )  # fmt: skip

    def _decide(
        self,
        con: duckdb.DuckDBPyConnection,
        request: AccessRequest,
        action: Action,
        node: str | None,
        now: datetime,
    ) -> State:
        """Record a node's vote; returns the request state that follows."""
        if node not in request.decisions:
            raise TransitionError(f"node {node!r} is not part of request {request.request_id!r}")
        if request.decisions[node] is not Decision.PENDING:
            raise TransitionError(
                f"node {node!r} has already {request.decisions[node].value} this request"
            )
        vote = Decision.ACCEPTED if action is Action.ACCEPT else Decision.DECLINED
        con.execute(
            "UPDATE access_request_node SET decision = ? WHERE request_id = ? AND node_id = ?",
            [vote.value, request.request_id, node],
        )
        target = after_decisions({**request.decisions, node: vote})
        if target is State.GRANTED:
            expires = now + timedelta(days=request.duration_days)
            con.execute(
                "UPDATE access_request SET expires_at = ? WHERE request_id = ?",
                [to_db(expires), request.request_id],
            )
        return target

    def _set_duration(
        self, con: duckdb.DuckDBPyConnection, request: AccessRequest, days: int
    ) -> None:
        if not 1 <= days <= request.duration_days:
            raise TransitionError(
                f"grant_days must be 1..{request.duration_days} (the requested days), got {days}"
            )
        con.execute(
            "UPDATE access_request SET duration_days = ? WHERE request_id = ?",
            [days, request.request_id],
        )

    def _record(
        self,
        con: duckdb.DuckDBPyConnection,
        request_id: str,
        actor: HubActor,
        action: Action,
        from_state: State | None,
        to_state: State,
        now: datetime,
        reason: str = "",
        node: str | None = None,
    ) -> NegotiationEvent:
        row = con.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM access_request_event WHERE request_id = ?",
            [request_id],
        ).fetchone()
        assert row is not None
        event = NegotiationEvent(
            request_id, int(row[0]), now, actor.user_id, action, from_state, to_state,
            reason.strip(), node,
        )  # fmt: skip
        con.execute(
            "INSERT INTO access_request_event VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [request_id, event.seq, to_db(now), event.actor, action.value, node,
             from_state.value if from_state else None, to_state.value, event.reason],
        )  # fmt: skip
        return event


def _put_nodes(
    con: duckdb.DuckDBPyConnection, request_id: str, collections: dict[str, tuple[str, ...]]
) -> None:
    """The nodes a request names, with their collections, all still to decide."""
    for node, names in collections.items():
        con.execute(
            "INSERT INTO access_request_node VALUES (?, ?, ?, ?)",
            [request_id, node, list(names), Decision.PENDING.value],
        )


def _event(row: tuple[Any, ...]) -> NegotiationEvent:
    time = from_db(row[2])
    assert time is not None
    return NegotiationEvent(
        row[0], row[1], time, row[3], Action(row[4]),
        State(row[5]) if row[5] else None, State(row[6]), row[7], row[8],
    )  # fmt: skip


def _validate(draft: RequestDraft) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """The draft's canonical cohort filter and collections; raises on bad input."""
    if not draft.project.strip() or not draft.purpose.strip():
        raise QueryError("an access request needs a project and a purpose")
    if draft.tier not in (TIER_FEDERATED, TIER_TRANSFER):
        raise QueryError(
            f"tier must be {TIER_FEDERATED} (federated) or {TIER_TRANSFER} (transfer), got"
            f" {draft.tier!r}; tier 1 (catalogue) needs no request"
        )
    if not 1 <= draft.duration_days <= MAX_DAYS:
        raise QueryError(f"duration_days must be 1..{MAX_DAYS}, got {draft.duration_days!r}")
    collections = {
        str(node): tuple(dict.fromkeys(str(c) for c in names))
        for node, names in draft.collections.items()
    }
    if not collections or any(not names for names in collections.values()):
        raise QueryError(
            f"name at least one collection for each node, got {dict(draft.collections)!r}"
        )
    return canonical_filter(parse_filter(draft.cohort)), collections
