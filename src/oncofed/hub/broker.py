"""The job broker: signed tasks from the hub to chosen nodes, delivered by the nodes' long polls.

A job is one request (a federated search, an evaluation) sent to several nodes; each node gets a
task. Tasks live in the hub database: ``queued`` → ``delivered`` (leased to the node for a while)
→ ``done`` / ``failed``; a delivered task whose lease runs out before an answer is delivered again,
up to ``max_attempts``; past the job's deadline an unanswered task is ``expired``; a job can be
``cancelled``. The first answer to a task wins; a second one is counted and ignored. In memory,
each node has a wake-up event (a waiting long poll returns at once when work arrives) and each job
one (its caller sees answers as they come).

Jobs and tasks live in SQLite (WAL, synchronous=NORMAL), not in the hub's DuckDB file: every
state change is a commit, and a DuckDB commit costs an fsync (~14 ms on the test VM) where a
SQLite WAL commit costs ~0.02 ms. Both survive a hub process crash or restart; a power loss may
lose the last moments of task states (the nodes' answers are then asked for again).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.hub.signing import Clock, utc_now

QUEUED, DELIVERED, DONE, FAILED, EXPIRED, CANCELLED = (
    "queued",
    "delivered",
    "done",
    "failed",
    "expired",
    "cancelled",
)
FINAL = frozenset({DONE, FAILED, EXPIRED, CANCELLED})
DEFAULT_LEASE = timedelta(seconds=30)
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS job (
        job_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        deadline REAL NOT NULL,
        cancelled INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS task (
        task_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES job (job_id),
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        lease_until REAL,
        answered_at REAL,
        result TEXT,
        error TEXT,
        duplicates INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS task_by_node ON task (node_id, state)",
    "CREATE INDEX IF NOT EXISTS task_by_job ON task (job_id)",
    # open tasks are few and finished ones pile up: expiry must not scan them all
    "CREATE INDEX IF NOT EXISTS task_by_state ON task (state)",
)


@dataclass(frozen=True)
class Task:
    """A task as its node receives it, or as the job's caller sees it."""

    task_id: str
    job_id: str
    node_id: str
    kind: str
    body: dict[str, Any]
    state: str
    attempts: int
    result: dict[str, Any] | None = None
    error: str | None = None
    duplicates: int = 0


class _Wakeups:
    """asyncio events keyed by name. The hub calls the broker from its event loop only, so no
    thread ever sets them."""

    def __init__(self) -> None:
        self._events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def event(self, key: str) -> asyncio.Event:
        return self._events[key]

    def set(self, key: str) -> None:
        self._events[key].set()

    def forget(self, key: str) -> None:
        self._events.pop(key, None)


class Broker:
    """Jobs and tasks in the hub database (see the module docstring)."""

    def __init__(
        self, path: Path, *, lease: timedelta = DEFAULT_LEASE, clock: Clock = utc_now
    ) -> None:
        self.lease, self.clock = lease, clock
        self.lock = threading.Lock()
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.con.execute(statement)
        columns = {row[1] for row in self.con.execute("PRAGMA table_info(job)")}
        if "lease" not in columns:  # a job's own lease (hubs made before it: the default)
            self.con.execute("ALTER TABLE job ADD COLUMN lease REAL")
        self._nodes = _Wakeups()
        self._jobs = _Wakeups()

    def submit(
        self,
        kind: str,
        body: dict[str, Any],
        node_ids: Sequence[str],
        *,
        created_by: str,
        deadline: timedelta,
        max_attempts: int = 3,
        lease: timedelta | None = None,
    ) -> str:
        """Queue a job for ``node_ids``; returns its id. ``lease``: how long a node may work on
        a delivered task before it is delivered again (default: the broker's), e.g. hours for
        an evaluation."""
        if not node_ids:
            raise ConfigError(f"a {kind} job needs at least one node")
        if max_attempts < 1 or deadline <= timedelta(0):
            raise ConfigError("a job needs a positive deadline and at least one attempt")
        job_id, now = uuid.uuid4().hex, self._now()
        with self.lock:
            self.con.execute("BEGIN")
            try:
                self.con.execute(
                    "INSERT INTO job (job_id, kind, body, created_by, created_at, deadline, lease)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        job_id,
                        kind,
                        json.dumps(body),
                        created_by,
                        now,
                        now + deadline.total_seconds(),
                        None if lease is None else lease.total_seconds(),
                    ],
                )
                self.con.executemany(
                    "INSERT INTO task (task_id, job_id, node_id, state, max_attempts)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [[uuid.uuid4().hex, job_id, n, QUEUED, max_attempts] for n in node_ids],
                )
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        for node_id in node_ids:
            self._nodes.set(node_id)
        return job_id

    def lease_for(self, node_id: str) -> list[Task]:
        """Tasks to hand to ``node_id`` now (queued, or delivered whose lease ran out); they are
        marked delivered until ``now`` + the job's lease. Tasks past their job's deadline expire."""
        now = self._now()
        with self.lock:
            self._expire(now)
            rows = self.con.execute(
                "UPDATE task SET state = ?, attempts = attempts + 1, lease_until = ? + COALESCE("
                "(SELECT lease FROM job WHERE job.job_id = task.job_id), ?)"
                " WHERE node_id = ? AND (state = ? OR (state = ? AND lease_until < ?"
                " AND attempts < max_attempts))"
                " AND NOT (SELECT cancelled FROM job WHERE job.job_id = task.job_id)"
                " RETURNING task_id",
                [DELIVERED, now, self.lease.total_seconds(), node_id, QUEUED, DELIVERED, now],
            ).fetchall()
            ids = [r[0] for r in rows]
            found = (
                self.con.execute(
                    _SELECT_TASKS + f" WHERE t.task_id IN ({', '.join('?' * len(ids))})", ids
                ).fetchall()
                if ids
                else []
            )
        return [_task(row) for row in found]

    async def wait_for_work(self, node_id: str, timeout: float) -> None:
        """Return when work is queued for ``node_id`` or after ``timeout`` seconds."""
        event = self._nodes.event(node_id)
        event.clear()
        if self._has_work(node_id):
            return
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return

    def answer(
        self, node_id: str, task_id: str, result: dict[str, Any] | None, error: str | None
    ) -> str:
        """Record a node's answer: 'accepted', or 'duplicate' when the task was answered before
        (or is no longer open); NodeNotFoundError for a task that is not this node's. The same
        answer sent again (a retry after a lost reply) is 'accepted' again, not a duplicate."""
        state = DONE if error is None else FAILED
        with self.lock:
            row = self.con.execute(
                "SELECT state, job_id, result, error FROM task WHERE task_id = ? AND node_id = ?",
                [task_id, node_id],
            ).fetchone()
            if row is None:
                raise NodeNotFoundError(f"node {node_id!r} has no task {task_id!r}")
            if _same_answer(row, state, result, error):
                return "accepted"
            if row[0] in FINAL:
                self.con.execute(
                    "UPDATE task SET duplicates = duplicates + 1 WHERE task_id = ?", [task_id]
                )
                return "duplicate"
            self.con.execute(
                "UPDATE task SET state = ?, answered_at = ?, result = ?, error = ?"
                " WHERE task_id = ?",
                [
                    state,
                    self._now(),
                    None if result is None else json.dumps(result),
                    error,
                    task_id,
                ],
            )
            job_id = str(row[1])
        self._jobs.set(job_id)
        return "accepted"

    def progress(self, job_id: str, reported: Collection[str]) -> tuple[list[Task], int]:
        """The job's final tasks not in ``reported`` (by node) and how many of its tasks are still
        open: what a caller following the job has not seen yet, without reading it all again."""
        with self.lock:
            self._expire(self._now())
            rows = self.con.execute(
                _SELECT_TASKS + " WHERE t.job_id = ? AND t.state IN (?, ?, ?, ?)"
                " ORDER BY t.node_id",
                [job_id, *sorted(FINAL)],
            ).fetchall()
            (open_count,) = self.con.execute(
                "SELECT count(*) FROM task WHERE job_id = ? AND state IN (?, ?)",
                [job_id, QUEUED, DELIVERED],
            ).fetchone()
        return [_task(row) for row in rows if row[0] not in reported], int(open_count)

    async def wait_for_answers(self, job_id: str, timeout: float) -> None:
        """Return when a task of ``job_id`` was answered since the last call, or after
        ``timeout`` seconds."""
        event = self._jobs.event(job_id)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return
        finally:
            event.clear()

    def cancel(self, job_id: str) -> None:
        """Cancel a job: its open tasks become cancelled and are no longer delivered."""
        with self.lock:
            found = self.con.execute(
                "UPDATE job SET cancelled = 1 WHERE job_id = ? RETURNING job_id", [job_id]
            ).fetchall()
            if not found:
                raise NodeNotFoundError(f"no job {job_id!r}")
            self.con.execute(
                "UPDATE task SET state = ? WHERE job_id = ? AND state IN (?, ?)",
                [CANCELLED, job_id, QUEUED, DELIVERED],
            )
        self._jobs.set(job_id)

    def expire(self, job_id: str) -> None:
        """End a job whose caller stopped waiting: open tasks expire."""
        with self.lock:
            self.con.execute(
                "UPDATE task SET state = ? WHERE job_id = ? AND state IN (?, ?)",
                [EXPIRED, job_id, QUEUED, DELIVERED],
            )
        self._jobs.forget(job_id)

    def tasks(self, job_id: str) -> list[Task]:
        """Every task of a job, by node."""
        with self.lock:
            self._expire(self._now())
            rows = self.con.execute(
                _SELECT_TASKS + " WHERE t.job_id = ? ORDER BY t.node_id", [job_id]
            ).fetchall()
        if not rows and not self._job_exists(job_id):
            raise NodeNotFoundError(f"no job {job_id!r}")
        return [_task(row) for row in rows]

    def task(self, task_id: str) -> Task:
        """One task with its job's kind and body."""
        with self.lock:
            row = self.con.execute(_SELECT_TASKS + " WHERE t.task_id = ?", [task_id]).fetchone()
        if row is None:
            raise NodeNotFoundError(f"no task {task_id!r}")
        return _task(row)

    def deadline(self, job_id: str) -> datetime:
        """When a job's unanswered tasks expire."""
        with self.lock:
            row = self.con.execute("SELECT deadline FROM job WHERE job_id = ?", [job_id]).fetchone()
        if row is None:
            raise NodeNotFoundError(f"no job {job_id!r}")
        return datetime.fromtimestamp(float(row[0]), UTC)

    def job_owner(self, job_id: str) -> str:
        """Who submitted a job."""
        with self.lock:
            row = self.con.execute(
                "SELECT created_by FROM job WHERE job_id = ?", [job_id]
            ).fetchone()
        if row is None:
            raise NodeNotFoundError(f"no job {job_id!r}")
        return str(row[0])

    def _has_work(self, node_id: str) -> bool:
        with self.lock:
            row = self.con.execute(
                "SELECT count(*) FROM task WHERE node_id = ? AND state = ?", [node_id, QUEUED]
            ).fetchone()
        return bool(row and row[0])

    def _job_exists(self, job_id: str) -> bool:
        with self.lock:
            row = self.con.execute("SELECT 1 FROM job WHERE job_id = ?", [job_id]).fetchone()
        return row is not None

    def close(self) -> None:
        with self.lock:
            self.con.close()

    def _now(self) -> float:
        return self.clock().timestamp()

    def _expire(self, now: float) -> None:
        """(Lock held.) Open tasks of jobs past their deadline, or out of attempts, expire."""
        self.con.execute(
            "UPDATE task SET state = ? WHERE state IN (?, ?) AND ("
            "(SELECT deadline FROM job WHERE job.job_id = task.job_id) < ?"
            " OR (state = ? AND lease_until < ? AND attempts >= max_attempts))",
            [EXPIRED, QUEUED, DELIVERED, now, DELIVERED, now],
        )


_SELECT_TASKS = (
    "SELECT t.task_id, t.job_id, t.node_id, j.kind, j.body, t.state, t.attempts, t.result,"
    " t.error, t.duplicates FROM task t JOIN job j USING (job_id)"
)


def _same_answer(
    row: tuple[Any, ...], state: str, result: dict[str, Any] | None, error: str | None
) -> bool:
    """Whether a task row (state, job, result, error) already holds exactly this answer."""
    stored = None if row[2] is None else json.loads(row[2])
    return bool(row[0] == state and stored == result and row[3] == error)


def _task(row: tuple[Any, ...]) -> Task:
    return Task(
        row[0],
        row[1],
        row[2],
        row[3],
        json.loads(row[4]),
        row[5],
        int(row[6]),
        None if row[7] is None else json.loads(row[7]),
        row[8],
        int(row[9]),
    )
