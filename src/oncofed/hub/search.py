"""Federated cohort search: one query to every approved node, answers streamed as they come.

Each node answers after its own disclosure control, so the hub only ever sees protected numbers:
integers rounded by the node, or ``"<k"`` for a suppressed count. Totals are therefore honest
ranges: a suppressed count adds between 0 and k-1. Nodes that are offline, too slow (the
deadline), failing or answering garbage are reported as such; they never fail the search.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

from oncofed.catalog.filters import parse_filter
from oncofed.errors import ForbiddenError, NodeNotFoundError
from oncofed.hub.broker import DONE, EXPIRED, FAILED, FINAL, Task
from oncofed.hub.service import Hub
from oncofed.hub.signing import utc_now

COUNTS = ("patients", "studies", "series", "instances")
_SUPPRESSED = re.compile(r"^<(\d{1,9})$")
MAX_DEADLINE_S = 120.0


def _count(value: object) -> tuple[int, int] | None:
    """(low, high) bounds of one protected count, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value, value
    if isinstance(value, str) and (match := _SUPPRESSED.match(value)):
        return 0, max(int(match.group(1)) - 1, 0)
    return None


def check_answer(result: Mapping[str, Any] | None) -> str | None:
    """Why a node's search answer is unusable, or None when it is a protected cohort answer."""
    if not isinstance(result, Mapping):
        return "the answer is not a JSON object"
    counts = result.get("counts")
    if not isinstance(counts, Mapping):
        return "the answer has no counts"
    for name in COUNTS:
        if _count(counts.get(name)) is None:
            return f"count {name!r} is not a protected count: {counts.get(name)!r}"
    facets = result.get("facets", {})
    if not isinstance(facets, Mapping) or not all(
        isinstance(buckets, list)
        and all(isinstance(b, Mapping) and _count(b.get("patients")) for b in buckets)
        for buckets in facets.values()
    ):
        return "the answer's facets are malformed"
    return None


def totals(answers: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts summed over nodes as {low, high} ranges, and facets summed over the values the
    nodes released (a lower bound: values suppressed at a node are missing from its answer)."""
    counts: dict[str, dict[str, int]] = {}
    for name in COUNTS:
        bounds = [_count(a["counts"][name]) for a in answers]
        counts[name] = {
            "low": sum(b[0] for b in bounds if b),
            "high": sum(b[1] for b in bounds if b),
        }
    facets: dict[str, dict[str, int]] = {}
    for answer in answers:
        for name, buckets in answer.get("facets", {}).items():
            merged = facets.setdefault(name, {})
            for bucket in buckets:
                low = (_count(bucket["patients"]) or (0, 0))[0]
                merged[str(bucket["value"])] = merged.get(str(bucket["value"]), 0) + low
    return {
        "counts": counts,
        "facets": {
            name: [
                {"value": v, "patients_at_least": n}
                for v, n in sorted(m.items(), key=lambda i: -i[1])
            ]
            for name, m in facets.items()
        },
    }


async def federated_search(
    hub: Hub,
    where: dict[str, Any],
    facets: list[str],
    *,
    user: str,
    deadline_s: float | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Lines of a search: first its job id (``GET /hub/v1/search/{job}`` gives the outcome
    again, e.g. after a dropped connection or a hub restart), then one line per node as it
    answers (or is found offline or too slow), then a summary with the totals. The filter is
    checked here first (an unknown field fails fast)."""
    parse_filter(where)
    deadline = min(deadline_s or hub.settings.search_deadline_s, MAX_DEADLINE_S)
    approved = hub.registry.approved()
    online = [n for n in approved if hub.online(n)]
    offline = [n for n in approved if n not in online]
    job_id, audited = None, None
    if online:
        body = {"where": where, "facets": facets, "user": user}
        job_id = hub.broker.submit(
            "search", body, online, created_by=user, deadline=timedelta(seconds=deadline)
        )
        # the audit commit (an fsync) overlaps the nodes' work instead of delaying it
        details = {"filter": where, "nodes": online}
        audited = asyncio.create_task(
            asyncio.to_thread(hub.audit, user, "search", f"job/{job_id}", details)
        )
    yield {"job": job_id, "asked": online, "deadline_s": deadline}
    for node in offline:
        yield {"node": node, "status": "offline"}
    tasks: list[Task] = []
    if job_id is not None:
        async for task in _answers(hub, job_id):
            tasks.append(task)
            yield node_line(task)
    if audited is not None:
        await audited
    yield summary(tasks, offline)


def search_outcome(hub: Hub, job_id: str, user: str) -> list[dict[str, Any]]:
    """The lines of a past search as the hub database has them: final nodes, still-open ones
    as ``pending``, and the summary of what is final (``complete`` once every node is)."""
    tasks = hub.broker.tasks(job_id)
    if not tasks or tasks[0].kind != "search":
        raise NodeNotFoundError(f"no search {job_id!r}")
    if hub.broker.job_owner(job_id) != user:
        raise ForbiddenError(f"search {job_id!r} is not {user!r}'s")
    final = [t for t in tasks if t.state in FINAL]
    lines = [node_line(t) for t in final]
    lines += [{"node": t.node_id, "status": "pending"} for t in tasks if t.state not in FINAL]
    return [*lines, summary(final, [], complete=len(final) == len(tasks))]


def summary(tasks: list[Task], offline: list[str], *, complete: bool = True) -> dict[str, Any]:
    """The closing line: each node's status and the totals of the valid answers."""
    statuses = {n: "offline" for n in offline}
    answers: list[Mapping[str, Any]] = []
    for task in tasks:
        line = node_line(task)
        statuses[task.node_id] = line["status"]
        if line["status"] == "answered":
            answers.append(line["result"])
    return {
        "summary": {
            "complete": complete,
            "nodes": dict(sorted(statuses.items())),
            "answered": len(answers),
            **totals(answers),
        }
    }


async def _answers(hub: Hub, job_id: str) -> AsyncIterator[Task]:
    """Each task of the job once, when final; unanswered ones expire at the job's deadline."""
    end = hub.broker.deadline(job_id)
    reported: set[str] = set()
    while True:
        fresh, still_open = hub.broker.progress(job_id, reported)
        for task in fresh:
            reported.add(task.task_id)
            yield task
        if not still_open:
            return
        remaining = (end - utc_now()).total_seconds()
        if remaining <= 0:
            hub.broker.expire(job_id)
            continue
        await hub.broker.wait_for_answers(job_id, remaining)


def node_line(task: Task) -> dict[str, Any]:
    """One final task as a search line: answered (with the protected result), error (failed
    or garbage), timeout (expired) or cancelled."""
    if task.state == DONE:
        problem = check_answer(task.result)
        if problem is None:
            return {"node": task.node_id, "status": "answered", "result": task.result}
        return {"node": task.node_id, "status": "error", "error": f"garbage: {problem}"}
    if task.state == FAILED:
        return {"node": task.node_id, "status": "error", "error": task.error}
    return {"node": task.node_id, "status": "timeout" if task.state == EXPIRED else task.state}
