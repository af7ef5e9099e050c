"""Disclosure control through the hub, across two real node processes.

A researcher runs a differencing attack (two searches whose cohorts differ by one patient, at a
rounding edge where plain rounding gives the patient away) and an averaging attack (the same
search again, also rephrased). Each node answers with its query-seeded noise, exactly as its
policy computes offline, so the best guess from the pair is right 52.5 % of the time at most
(plain rounding: always); repeating yields the one same answer; and the node's and the hub's
daily budgets end the attack.
The statistics behind the noise are tested on the policy itself in tests/test_disclosure.py.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from federation_support import Federation, federation

from oncofed.config import load_settings, write_settings
from oncofed.deid.keys import node_key
from oncofed.disclosure import DisclosurePolicy, node_policy
from oncofed.hub.service import Hub, HubSettings
from oncofed.node import Node

NOISE_SCALE = 10.0
NODE_BUDGET, HUB_BUDGET = 5, 6  # searches per user per day
BEST_GUESS = 0.53  # 1/2 + P(offset = 0)/2 = 0.525 for discrete Laplace noise of scale 10


def search(fed: Federation, token: str, where: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{fed.url}/hub/v1/search",
        json={"where": where, "deadline_s": 20},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def node_answers(answer: httpx.Response) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    lines = [json.loads(line) for line in answer.text.splitlines()]
    return {line["node"]: line for line in lines if "node" in line}


def released(policy: DisclosurePolicy, count: int, query: dict[str, Any]) -> int | str:
    return policy.protect(count, query=query, label="patients")


def answers(policy: DisclosurePolicy, count: int) -> dict[int | str, float]:
    """How likely each released value is when the true count is ``count``: the policy's noise
    distribution pushed through its suppression and rounding."""
    noise = policy.noise
    offsets = {0: 1.0} if noise is None else {
        e: math.exp(-abs(e) / noise.scale) for e in range(-noise.bound, noise.bound + 1)
    }  # fmt: skip
    plain, total = DisclosurePolicy(policy.min_count, policy.rounding), sum(offsets.values())
    found: dict[int | str, float] = {}
    for offset, weight in offsets.items():
        value = plain.protect(count + offset)
        found[value] = found.get(value, 0.0) + weight / total
    return found


def best_guess(policy: DisclosurePolicy, n: int) -> float:
    """The best attacker's chance to tell n from n + 1 patients from one released value:
    1/2 + half the total variation between the two answer distributions."""
    out, into = answers(policy, n), answers(policy, n + 1)
    gap = sum(abs(out.get(v, 0.0) - into.get(v, 0.0)) for v in set(out) | set(into))
    return 0.5 + gap / 4


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    for running in federation(tmp_path):
        home = tmp_path / "hub"
        hub, token = Hub.init(home, name="test-hub")
        hub.close()
        running.token = token.token
        HubSettings("test-hub", online_window_s=3.0, queries_per_day=HUB_BUDGET).write(home)
        running.start_hub()
        yield running


def test_differencing_and_averaging_through_the_hub_learn_nothing(fed: Federation) -> None:
    homes = {"east": fed.add_node("east", patients=45, seed=3)}  # many rounding edges
    homes["west"] = fed.add_node("west", patients=12, seed=4)
    policies = {}
    for name, home in homes.items():
        settings = load_settings(home)
        write_settings(home, settings.model_copy(update={
            "count_noise_scale": NOISE_SCALE, "queries_per_day": NODE_BUDGET}))  # fmt: skip
        policies[name] = node_policy(load_settings(home), node_key(home))
        fed.start_agent(name)
    # the two cohorts: east's patients with a study up to age x1, and up to x2, where one more
    # patient enters and plain rounding gives it away (e.g. 9 -> 10 is released "<10" -> 10)
    plain = DisclosurePolicy(10, 10)
    with Node(homes["east"], read_only=True) as node:
        rows = node.catalog.con.execute(
            "SELECT DISTINCT age_years FROM study WHERE collection_id = 'east-coll' ORDER BY 1"
        ).fetchall()
        ages = [float(r[0]) for r in rows]
        counts = {
            age: node.catalog.query({"collection": ["east-coll"], "age": [0, age]}).counts.patients
            for age in ages
        }
    edges = [
        (a, b)
        for a, b in itertools.pairwise(ages)
        if counts[b] == counts[a] + 1 and plain.protect(counts[a]) != plain.protect(counts[b])
    ]
    cohorts = {x: {"collection": ["east-coll"], "age": [0.0, x]} for x in ages}
    east = policies["east"]

    def noised(x: float) -> bool:  # east's noise changes what plain rounding would release
        return released(east, counts[x], cohorts[x]) != plain.protect(counts[x])

    # an edge where the noise shows, so the answers below prove that it was applied
    edges = [(a, b) for a, b in edges if noised(a) or noised(b)]
    assert edges, f"no one-patient step at a rounding edge in this cohort: {counts}"
    (x1, x2) = edges[0]
    n, without, with_target = counts[x1], cohorts[x1], cohorts[x2]

    httpx.post(f"{fed.url}/hub/v1/users", headers=fed.admin,
               json={"user_id": "eve", "roles": ["researcher"]})  # fmt: skip
    eve = httpx.post(f"{fed.url}/hub/v1/users/eve/tokens", headers=fed.admin, json={}).json()
    fed.wait_online("east", "west")

    first = node_answers(search(fed, eve["token"], without))
    second = node_answers(search(fed, eve["token"], with_target))
    a1 = first["east"]["result"]["counts"]["patients"]
    a2 = second["east"]["result"]["counts"]["patients"]
    # each node released exactly its noised policy's answer (west holds none of these patients)
    assert (a1, a2) == (released(east, n, without), released(east, n + 1, with_target))
    assert second["west"]["result"]["counts"]["patients"] == released(
        policies["west"], 0, with_target
    )
    # what the pair tells: the first answer is drawn the same way whether or not the target is
    # in, so all there is to learn is in the second; from it the best guess is right 52.5 % of
    # the time (a coin: 50 %), where plain rounding would always be right
    assert best_guess(plain, n) == 1.0
    assert best_guess(east, n) < BEST_GUESS

    # averaging: the same cohort again, also asked with its terms in another order
    rephrased = {"age": [0.0, x2], "collection": ["east-coll"]}
    again = [node_answers(search(fed, eve["token"], q)) for q in (with_target, rephrased)]
    assert {a["east"]["result"]["counts"]["patients"] for a in again} == {a2}

    # the node's budget (5 per hub user per day) ends eve's questions there, the hub's (6) at all
    fifth = node_answers(search(fed, eve["token"], without))
    assert fifth["east"]["status"] == "answered"
    sixth = node_answers(search(fed, eve["token"], without))
    assert sixth["east"]["status"] == "error" and "query_budget_exhausted" in sixth["east"]["error"]
    refused = search(fed, eve["token"], without)
    assert refused.status_code == 403
    assert refused.json()["title"] == "query_budget_exhausted" and "this hub" in refused.text
