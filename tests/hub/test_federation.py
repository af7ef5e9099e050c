"""Federation across real processes: a hub and node agents on 127.0.0.1.

Joining and approval, federated search totals against each node's own protected answer, and
faults: a node that is down, hangs, answers garbage or twice; forged, tampered and replayed
messages; a hub restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from federation_support import Federation, federation, stop, wait_until

from oncofed.agent.membership import HubChannel, Membership, join
from oncofed.errors import ConfigError
from oncofed.hub.keys import KeyPaths, generate_keypair
from oncofed.hub.signing import Signer


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    yield from federation(tmp_path)


def _by_node(lines: list[dict]) -> dict[str, dict]:
    return {line["node"]: line for line in lines if "node" in line}


def test_search_totals_are_the_sum_of_each_nodes_protected_answer(fed: Federation) -> None:
    fed.start_hub()
    fed.add_node("north", patients=40, seed=1)
    fed.add_node("south", patients=25, seed=2)
    for name in ("north", "south"):
        fed.start_agent(name)
    fed.wait_online("north", "south")
    lines = fed.search()
    nodes, summary = _by_node(lines), lines[-1]["summary"]
    for name in ("north", "south"):
        assert nodes[name]["status"] == "answered"
        assert nodes[name]["result"]["counts"] == fed.expected[name]["counts"]
    for count in ("patients", "series", "instances"):
        values = [fed.expected[n]["counts"][count] for n in ("north", "south")]
        assert all(isinstance(v, int) for v in values)  # 25+ patients: nothing suppressed
        assert summary["counts"][count] == {"low": sum(values), "high": sum(values)}
    catalogue = httpx.get(f"{fed.url}/hub/v1/catalogue").json()  # public, no token
    assert {entry["node"] for entry in catalogue} == {"north", "south"}
    assert all(isinstance(c["patients"], int) for e in catalogue for c in e["collections"])


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
    for seed, name in enumerate(("good", "down", "slow", "junk")):
        fed.add_node(name, patients=15, seed=seed + 10)
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


def test_hub_restart_keeps_nodes_and_jobs_and_agents_reconnect(fed: Federation) -> None:
    fed.start_hub()
    fed.add_node("east", patients=20, seed=5)
    fed.start_agent("east")
    fed.wait_online("east")
    job = httpx.post(
        f"{fed.url}/hub/v1/jobs",
        json={"kind": "no-such-kind", "nodes": ["east"], "deadline_s": 600},
        headers=fed.admin,
    ).json()["job_id"]
    fed.stop_hub()
    fed.start_hub(port=int(fed.url.rsplit(":", 1)[1]))
    fed.wait_online("east")  # the agent backed off and came back

    def answered() -> bool:
        (task,) = httpx.get(f"{fed.url}/hub/v1/jobs/{job}", headers=fed.admin).json()
        return task["state"] == "failed"

    wait_until(answered, timeout=30)
    (task,) = httpx.get(f"{fed.url}/hub/v1/jobs/{job}", headers=fed.admin).json()
    assert "no handler" in task["error"] and task["duplicates"] == 0
    assert _by_node(fed.search())["east"]["status"] == "answered"
