"""The job broker on its own: delivery, leases and retries, deadlines, answers, cancellation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from oncofed.errors import NodeNotFoundError
from oncofed.hub.broker import CANCELLED, DELIVERED, DONE, EXPIRED, QUEUED, Broker
from oncofed.hub.signing import utc_now


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(tmp_path: Path, clock: Clock) -> Broker:
    return Broker(tmp_path / "broker.sqlite", lease=timedelta(seconds=10), clock=clock)


def test_tasks_are_delivered_once_per_lease_and_retried(broker: Broker, clock: Clock) -> None:
    job = broker.submit(
        "search", {"q": 1}, ["a", "b"], created_by="u", deadline=timedelta(minutes=5),
        max_attempts=2,
    )  # fmt: skip
    first = broker.lease_for("a")
    assert [(t.kind, t.body, t.state, t.attempts) for t in first] == [
        ("search", {"q": 1}, DELIVERED, 1)
    ]
    assert broker.lease_for("a") == []  # leased: not handed out twice
    clock.now += timedelta(seconds=11)
    again = broker.lease_for("a")
    assert [t.attempts for t in again] == [2]  # the lease ran out unanswered: redelivered
    clock.now += timedelta(seconds=11)
    assert broker.lease_for("a") == []
    states = {t.node_id: t.state for t in broker.tasks(job)}
    assert states == {"a": EXPIRED, "b": QUEUED}  # out of attempts; b never polled


def test_first_answer_wins_and_repeats_are_counted(broker: Broker) -> None:
    job = broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(minutes=1))
    (task,) = broker.lease_for("a")
    assert broker.answer("a", task.task_id, {"n": 1}, None) == "accepted"
    assert broker.answer("a", task.task_id, {"n": 2}, None) == "duplicate"
    (done,) = broker.tasks(job)
    assert (done.state, done.result, done.duplicates) == (DONE, {"n": 1}, 1)
    with pytest.raises(NodeNotFoundError):
        broker.answer("b", task.task_id, {"n": 3}, None)  # not b's task


def test_deadline_expires_and_cancel_stops_delivery(broker: Broker, clock: Clock) -> None:
    late = broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(seconds=5))
    clock.now += timedelta(seconds=6)
    assert broker.lease_for("a") == []
    assert [t.state for t in broker.tasks(late)] == [EXPIRED]
    job = broker.submit("evaluate", {}, ["a"], created_by="u", deadline=timedelta(hours=1))
    broker.cancel(job)
    assert broker.lease_for("a") == []
    (task,) = broker.tasks(job)
    assert task.state == CANCELLED
    assert broker.answer("a", task.task_id, {}, None) == "duplicate"  # too late: ignored


def test_a_waiting_poll_wakes_up_when_work_arrives(broker: Broker) -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        waiter = asyncio.create_task(broker.wait_for_work("a", 5.0))
        await asyncio.sleep(0.05)
        broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(minutes=1))
        await waiter
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0


def test_the_same_answer_sent_again_is_accepted_not_a_duplicate(broker: Broker) -> None:
    """A node that lost the hub's reply sends its answer again: taken once, not counted."""
    job = broker.submit("search", {}, ["a"], created_by="u", deadline=timedelta(minutes=1))
    (task,) = broker.lease_for("a")
    assert broker.answer("a", task.task_id, {"n": 1}, None) == "accepted"
    assert broker.answer("a", task.task_id, {"n": 1}, None) == "accepted"
    assert broker.answer("a", task.task_id, None, "boom") == "duplicate"  # another answer
    (done,) = broker.tasks(job)
    assert (done.state, done.result, done.duplicates) == (DONE, {"n": 1}, 1)


def test_progress_gives_each_final_task_once(broker: Broker, clock: Clock) -> None:
    job = broker.submit("search", {}, ["a", "b"], created_by="u", deadline=timedelta(seconds=5))
    assert broker.progress(job, set()) == ([], 2)
    (task,) = broker.lease_for("a")
    broker.answer("a", task.task_id, {"n": 1}, None)
    fresh, still_open = broker.progress(job, set())
    assert [(t.node_id, t.result) for t in fresh] == [("a", {"n": 1})] and still_open == 1
    assert broker.progress(job, {task.task_id}) == ([], 1)
    clock.now += timedelta(seconds=6)
    fresh, still_open = broker.progress(job, {task.task_id})
    assert [(t.node_id, t.state) for t in fresh] == [("b", EXPIRED)] and still_open == 0


def test_polls_and_progress_do_not_scan_finished_tasks(broker: Broker) -> None:
    """Finished tasks pile up over a hub's life: no statement a poll or a search runs may read
    them all (each used to, and a search cost ~100 ms of broker time after 1,000 searches)."""
    for _ in range(3):
        job = broker.submit("search", {}, ["a", "b"], created_by="u", deadline=timedelta(hours=1))
        for node in ("a", "b"):
            (task,) = broker.lease_for(node)
            broker.answer(node, task.task_id, {"n": 1}, None)
    statements: list[str] = []
    broker.con.set_trace_callback(statements.append)
    broker.lease_for("a")
    broker.progress(job, set())
    broker.con.set_trace_callback(None)
    plans = [
        str(step[3])
        for sql in statements
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
        for step in broker.con.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    ]
    assert plans and not [p for p in plans if p.startswith("SCAN")], plans
