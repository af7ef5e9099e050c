"""Federation across real processes: a hub and node agents on 127.0.0.1.

Joining and approval, federated search totals against each node's own protected answer, and
faults: a node that is down, hangs, answers garbage or twice; forged, tampered and replayed
messages; a hub restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from federation_support import FACETS, QUERY, Federation, federation, free_port, stop, wait_until

from oncofed.agent import loop
from oncofed.agent.handlers import HANDLERS
from oncofed.agent.loop import Agent, Backoff, Outbox
from oncofed.agent.membership import HubChannel, Membership, join
from oncofed.errors import ConfigError
from oncofed.hub.keys import KeyPaths, generate_keypair, public_pem
from oncofed.hub.signing import Message, Signer, utc_now
from oncofed.node import Node
from oncofed.server.service import NodeService


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    yield from federation(tmp_path)


def _by_node(lines: list[dict]) -> dict[str, dict]:
    return {line["node"]: line for line in lines if "node" in line}


def _bounds(count: int | str) -> tuple[int, int]:
    """A protected count as the range of true values it stands for."""
    if isinstance(count, int):
        return count, count
    return 0, int(count.removeprefix("<")) - 1


def _expected_totals(fed: Federation, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    out = {}
    for count in ("patients", "studies", "series", "instances"):
        bounds = [_bounds(fed.expected[n]["counts"][count]) for n in names]
        out[count] = {"low": sum(b[0] for b in bounds), "high": sum(b[1] for b in bounds)}
    return out


def test_search_totals_are_the_sum_of_each_nodes_protected_answer(fed: Federation) -> None:
    fed.start_hub()
    fed.add_node("north", patients=14, seed=1)
    fed.add_node("south", patients=12, seed=2)
    for name in ("north", "south"):
        fed.start_agent(name)
    fed.wait_online("north", "south")
    lines = fed.search()
    nodes, summary = _by_node(lines), lines[-1]["summary"]
    assert lines[0]["job"] and sorted(lines[0]["asked"]) == ["north", "south"]
    for name in ("north", "south"):
        assert nodes[name]["status"] == "answered"
        assert nodes[name]["result"]["counts"] == fed.expected[name]["counts"]
    totals = {k: summary["counts"][k] for k in ("patients", "studies", "series", "instances")}
    assert totals == _expected_totals(fed, ("north", "south"))
    assert summary["complete"] and summary["answered"] == 2
    again = httpx.get(f"{fed.url}/hub/v1/search/{lines[0]['job']}", headers=fed.admin).json()
    assert again[-1] == lines[-1]  # the recorded outcome is the streamed one
    catalogue = httpx.get(f"{fed.url}/hub/v1/catalogue").json()  # public, no token
    assert {entry["node"] for entry in catalogue} == {"north", "south"}
    assert all(
        isinstance(c["patients"], int | str) and "-coll" in c["collection_id"]
        for e in catalogue
        for c in e["collections"]
    )
    bad = httpx.post(
        f"{fed.url}/hub/v1/search", json={"where": {"no_such_field": [1]}}, headers=fed.admin
    )
    assert bad.status_code == 400 and "no_such_field" in bad.text  # refused before any node


def test_down_hung_and_garbage_nodes_are_reported_not_fatal(
    fed: Federation, tmp_path: Path
) -> None:
    faulty = tmp_path / "faulty_handlers.py"
    faulty.write_text(
        "import time\n"
        "from oncofed.agent.handlers import handler\n"
        "@handler('search')\n"
        "def search(ctx, body):\n"
        "    if ctx.node_id == 'slow':\n"
        "        time.sleep(30)\n"
        "    return {'counts': {'patients': 3}}  # garbage: unprotected, incomplete\n"
    )
    fed.start_hub(online_window_s=2.0)
    fed.add_node("good", patients=12, seed=10)
    for name in ("down", "slow", "junk"):
        fed.add_node(name, patients=0, seed=0)
    fed.start_agent("good")
    for name in ("slow", "junk"):
        fed.start_agent(name, handlers=faulty)
    fed.wait_online("good", "slow", "junk")
    start = time.monotonic()
    lines = fed.search(deadline_s=2.0)
    elapsed = time.monotonic() - start
    nodes = _by_node(lines)
    assert nodes["good"]["status"] == "answered"
    assert nodes["down"]["status"] == "offline"  # never polled
    assert nodes["slow"]["status"] == "timeout"
    assert nodes["junk"]["status"] == "error" and "garbage" in nodes["junk"]["error"]
    assert elapsed < 2.0 + 2.0  # the deadline, not the hung node, bounds the search
    summary = lines[-1]["summary"]
    assert summary["answered"] == 1
    good = fed.expected["good"]["counts"]["patients"]
    low = good if isinstance(good, int) else 0
    assert summary["counts"]["patients"]["low"] == low  # only the good node counts
    stop(fed.agents["good"])  # a node that stops polling goes offline after the window
    time.sleep(3.5)  # the hub notices the dropped poll within a second, then the window
    assert _by_node(fed.search(deadline_s=1.0))["good"]["status"] == "offline"


def test_double_answers_forged_tampered_and_replayed_messages(
    fed: Federation, tmp_path: Path
) -> None:
    fed.start_hub()
    home = tmp_path / "manual"
    home.mkdir()
    assert join(home, fed.url, "manual", name="manual") == "pending"
    channel = HubChannel(home, Membership.read(home), httpx.Client())
    with pytest.raises(ConfigError, match="401"):  # not approved yet
        channel.call("poll", "poll", {"wait_s": 0}, "tasks")
    httpx.post(f"{fed.url}/hub/v1/nodes/manual/approve", headers=fed.admin)
    channel.call("poll", "poll", {"wait_s": 0}, "tasks")  # the catalogue request, left alone
    job = httpx.post(
        f"{fed.url}/hub/v1/jobs",
        json={"kind": "echo", "body": {"x": 1}, "nodes": ["manual"]},
        headers=fed.admin,
    ).json()["job_id"]
    tasks = channel.call("poll", "poll", {"wait_s": 2}, "tasks").body["tasks"]
    (task,) = [t for t in tasks if t["kind"] == "echo"]
    first = channel.call(
        "answer", "answer", {"task_id": task["task_id"], "result": {"v": 1}}, "answered"
    )
    again = channel.call(
        "answer", "answer", {"task_id": task["task_id"], "result": {"v": 2}}, "answered"
    )
    assert (first.body["outcome"], again.body["outcome"]) == ("accepted", "duplicate")
    (status,) = httpx.get(f"{fed.url}/hub/v1/jobs/{job}", headers=fed.admin).json()
    assert (status["state"], status["result"], status["duplicates"]) == ("done", {"v": 1}, 1)

    envelope = channel.signer.sign("test-hub", "poll", {"wait_s": 0})
    post = lambda raw: httpx.post(f"{fed.url}/hub/v1/poll", content=raw)  # noqa: E731
    assert post(envelope.to_json()).status_code == 200
    replayed = post(envelope.to_json())
    assert replayed.status_code == 401 and "replayed" in replayed.json()["title"]
    tampered = envelope.to_json().replace(b'"wait_s":0', b'"wait_s":1')
    assert post(tampered).status_code == 401
    stranger = Signer("manual", generate_keypair(KeyPaths.in_dir(tmp_path / "other", "x")))
    forged = post(stranger.sign("test-hub", "poll", {"wait_s": 0}).to_json())
    assert forged.status_code == 401 and "signature" in forged.json()["title"]
    channel.close()


def test_polls_carry_answers_and_a_resent_answer_counts_once(
    fed: Federation, tmp_path: Path
) -> None:
    fed.start_hub()
    home = tmp_path / "manual"
    home.mkdir()
    join(home, fed.url, "manual", name="manual")
    httpx.post(f"{fed.url}/hub/v1/nodes/manual/approve", headers=fed.admin)
    channel = HubChannel(home, Membership.read(home), httpx.Client())
    channel.call("poll", "poll", {"wait_s": 0}, "tasks")  # the catalogue request, left alone
    job = httpx.post(
        f"{fed.url}/hub/v1/jobs", json={"kind": "echo", "nodes": ["manual"]}, headers=fed.admin
    ).json()["job_id"]
    (task,) = channel.call("poll", "poll", {"wait_s": 2}, "tasks").body["tasks"]
    answer = {"task_id": task["task_id"], "result": {"v": 1}}
    stranger = {"task_id": "not-mine", "result": {}}
    carried = {"wait_s": 0, "answers": [answer, stranger]}
    reply = channel.call("poll", "poll", carried, "tasks")
    assert reply.body["answered"] == {task["task_id"]: "accepted", "not-mine": "unknown"}
    resent = channel.call("poll", "poll", {"wait_s": 0, "answers": [answer]}, "tasks")
    assert resent.body["answered"] == {task["task_id"]: "accepted"}  # the reply was lost
    other = {"task_id": task["task_id"], "result": {"v": 2}}
    assert channel.call("answer", "answer", other, "answered").body["outcome"] == "duplicate"
    (status,) = httpx.get(f"{fed.url}/hub/v1/jobs/{job}", headers=fed.admin).json()
    assert (status["state"], status["result"], status["duplicates"]) == ("done", {"v": 1}, 1)
    with pytest.raises(ConfigError, match="400"):
        channel.call("poll", "poll", {"wait_s": 0, "answers": {"task_id": 1}}, "tasks")
    channel.close()


def test_hub_crash_mid_search_loses_nothing_and_counts_once(
    fed: Federation, tmp_path: Path
) -> None:
    slow = tmp_path / "slow_handlers.py"
    slow.write_text(
        "import time\n"
        "from oncofed.agent import handlers\n"
        "real = handlers.HANDLERS['search']\n"
        "@handlers.handler('search')\n"
        "def search(ctx, body):\n"
        "    time.sleep(4)\n"
        "    return real(ctx, body)\n"
    )
    fed.start_hub()
    fed.add_node("east", patients=12, seed=5)
    fed.add_node("west", patients=11, seed=6)
    fed.start_agent("east")
    fed.start_agent("west", handlers=slow)
    fed.wait_online("east", "west")
    job = httpx.post(
        f"{fed.url}/hub/v1/jobs",
        json={"kind": "no-such-kind", "nodes": ["east"], "deadline_s": 600},
        headers=fed.admin,
    ).json()["job_id"]
    body = {"where": QUERY, "facets": FACETS, "deadline_s": 60}
    seen: list[dict] = []
    url = f"{fed.url}/hub/v1/search"
    with (  # the stream breaks when the hub dies
        pytest.raises(httpx.HTTPError),
        httpx.stream("POST", url, json=body, headers=fed.admin, timeout=60) as stream,
    ):
        for line in stream.iter_lines():
            seen.append(json.loads(line))
            if seen[-1].get("node") == "east":
                fed.kill_hub()  # west is still working on its answer
    assert [line.get("node") for line in seen] == [None, "east"]
    search = seen[0]["job"]
    fed.start_hub(port=int(fed.url.rsplit(":", 1)[1]))

    def outcome() -> list[dict]:
        return httpx.get(f"{fed.url}/hub/v1/search/{search}", headers=fed.admin).json()

    wait_until(lambda: outcome()[-1]["summary"]["complete"], timeout=60)
    lines = outcome()
    summary = lines[-1]["summary"]
    assert summary["nodes"] == {"east": "answered", "west": "answered"}  # west's answer waited
    counts = {k: summary["counts"][k] for k in ("patients", "studies", "series", "instances")}
    assert counts == _expected_totals(fed, ("east", "west"))  # each node counted once
    tasks = httpx.get(f"{fed.url}/hub/v1/jobs/{search}", headers=fed.admin).json()
    assert sum(t["duplicates"] for t in tasks) == 0
    wait_until(lambda: _job(fed, job)["state"] == "failed", timeout=30)  # kept across restart
    assert "no handler" in _job(fed, job)["error"]


def _job(fed: Federation, job: str) -> dict:
    (task,) = httpx.get(f"{fed.url}/hub/v1/jobs/{job}", headers=fed.admin).json()
    return task


# -- the agent's loop on its own (no hub process) -----------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent for a fresh node joined to a hub at a port nobody listens on."""
    home = tmp_path / "node"
    Node.init(home, name="node").close()
    hub_key = generate_keypair(KeyPaths.in_dir(tmp_path / "hub-keys", "hub"))
    pem = public_pem(hub_key.public_key()).decode()
    Membership(f"http://127.0.0.1:{free_port()}", "test-hub", pem, "node").write(home)
    with NodeService.open(home) as service:
        agent = Agent(service, wait_s=1.0)
        yield agent
        agent.stop()


class ScriptedChannel:
    """Replies to the agent's calls from a script and records what it sent."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def call(self, path: str, kind: str, body: dict[str, Any], reply: str, **_: Any) -> Message:
        self.sent.append((path, body))
        answer = self.replies.pop(0) if path == "poll" else {"outcome": "accepted"}
        return Message("test-hub", "node", reply, utc_now(), "nonce", answer)

    def close(self) -> None:
        pass


def test_the_next_poll_carries_quick_answers_and_slow_ones_go_alone(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "GATHER_S", 0.2)
    monkeypatch.setitem(HANDLERS, "test.quick", lambda ctx, body: {"echo": body})
    monkeypatch.setitem(HANDLERS, "test.slow", lambda ctx, body: time.sleep(0.6) or {})
    tasks = [
        {"task_id": "t1", "kind": "test.quick", "body": {"x": 1}},
        {"task_id": "t2", "kind": "test.slow", "body": {}},
    ]
    agent.channel.close()
    agent.channel = channel = ScriptedChannel(  # type: ignore[assignment]
        [{"tasks": tasks}, {"tasks": [], "answered": {"t1": "accepted"}}]
    )
    assert agent.poll_once() == 2  # returns after GATHER_S: t2 is still running
    assert [a["task_id"] for a in agent.carried] == ["t1"]
    assert agent.poll_once() == 0
    quick = {"task_id": "t1", "result": {"echo": {"x": 1}}}
    assert channel.sent[1] == ("poll", {"wait_s": 1.0, "answers": [quick]})
    wait_until(lambda: ("answer", {"task_id": "t2", "result": {}}) in channel.sent, timeout=5)
    assert agent.carried == [] and len(channel.sent) == 3


def test_an_unreachable_hub_is_one_warning_then_quiet_backoff(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=loop.__name__)
    agent.start()
    time.sleep(1.6)  # tries at 0 s and 1 s, then waits 2 s
    agent.stop()
    records = [r for r in caplog.records if r.name == loop.__name__]
    assert [r.levelno for r in records][:2] == [logging.WARNING, logging.DEBUG]
    assert sum(r.levelno >= logging.WARNING for r in records) == 1
    assert "127.0.0.1" in records[0].getMessage()


def test_backoff_doubles_to_its_cap_and_notes_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=loop.__name__)
    backoff = Backoff("hub x")
    delays = [backoff.failed(OSError("refused")) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, loop.MAX_BACKOFF_S, loop.MAX_BACKOFF_S]
    backoff.succeeded()
    backoff.succeeded()  # nothing to note: it was working
    assert backoff.failed(OSError("refused again")) == 1.0  # a new streak warns again
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, *[logging.DEBUG] * 5, logging.INFO, logging.WARNING]


def test_outbox_keeps_only_answers_the_loop_waits_for() -> None:
    outbox = Outbox()
    outbox.expect(["a", "b"])
    assert outbox.offer({"task_id": "a", "result": {}})
    assert not outbox.offer({"task_id": "z", "result": {}})  # not waited for: sent alone
    assert outbox.collect(0.05) == [{"task_id": "a", "result": {}}]  # b is late
    assert not outbox.offer({"task_id": "b", "result": {}})  # too late: sent alone
