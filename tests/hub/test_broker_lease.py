"""A job's own lease: long tasks (evaluations) are not delivered again while a node works on
them; a hub made before jobs had a lease column gains it."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from oncofed.hub.broker import DELIVERED, DONE, Broker
from oncofed.hub.signing import utc_now


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


def test_a_job_with_a_long_lease_is_not_redelivered_or_expired_while_worked_on(
    tmp_path: Path,
) -> None:
    clock = Clock()
    broker = Broker(tmp_path / "broker.sqlite", lease=timedelta(seconds=10), clock=clock)
    long = broker.submit("tef.evaluate", {}, ["a"], created_by="u", deadline=timedelta(hours=6),
                         max_attempts=1, lease=timedelta(hours=2))  # fmt: skip
    short = broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(hours=6))
    delivered = {t.job_id: t for t in broker.lease_for("a")}
    clock.now += timedelta(minutes=30)
    assert [t.job_id for t in broker.lease_for("a")] == [short]  # only the short lease ran out
    assert [t.state for t in broker.tasks(long)] == [DELIVERED]
    assert broker.answer("a", delivered[long].task_id, {"ok": True}, None) == "accepted"
    assert [t.state for t in broker.tasks(long)] == [DONE]
    broker.close()


def test_a_broker_database_without_the_lease_column_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE job (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,"
        " created_by TEXT NOT NULL, created_at REAL NOT NULL, deadline REAL NOT NULL,"
        " cancelled INTEGER NOT NULL DEFAULT 0)"
    )
    old.execute("INSERT INTO job VALUES ('old', 'search', '{}', 'u', 0, 1e12, 0)")
    old.commit()
    old.close()
    broker = Broker(path)
    job = broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(minutes=1))
    assert [t.job_id for t in broker.lease_for("a")] == [job]
    broker.close()
