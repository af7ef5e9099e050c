"""The agent's loop: long-poll the hub, run each task's handler in a worker thread, answer.

The node only dials out (a hospital opens no port). A poll waits at the hub until work arrives or
``wait_s`` passes; tasks run in a thread pool so a slow one does not stop the polling. The loop
waits up to ``GATHER_S`` for the tasks it got and the next poll carries their answers (one request
per task, not an answer and then a poll); a task that takes longer answers on its own. Every
message is signed, and the hub's replies are verified against its pinned key. An unreachable hub
is logged once and retried with backoff (1 s doubling to 10 s); it never ends the loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from oncofed.agent.handlers import HANDLERS, AgentContext
from oncofed.agent.membership import HubChannel, Membership
from oncofed.errors import OncofedError
from oncofed.server.service import NodeService

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 10.0
ANSWER_TRIES = 10  # about a minute of backoff
GATHER_S = 0.5  # how long the loop waits for its tasks' answers before polling without them
# Modules whose import registers more handlers, loaded when they are installed.
OPTIONAL_HANDLER_MODULES = ("oncofed.agent.grants", "oncofed.tef.evaluate", "oncofed.tef.compare")


def load_handler_modules(extra: list[str] | None = None) -> None:
    """Import the modules that register handlers (``extra``: deployment-specific ones)."""
    for name in OPTIONAL_HANDLER_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:  # the node still serves every other kind of task
            log.error("task handlers of %s not loaded: %s", name, exc)
    for name in extra or []:
        importlib.import_module(name)


class Backoff:
    """Exponential backoff for one failing thing: the first failure of a streak is a warning,
    the later ones are debug messages, and recovery is noted once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.0

    def failed(self, error: Exception) -> float:
        """Seconds to wait before the next try."""
        if self.delay:
            log.debug("%s: %s; retrying in %.0f s", self.what, error, self.delay)
        else:
            log.warning(
                "%s: %s; retrying with backoff (up to %.0f s), quietly until it works",
                self.what, error, MAX_BACKOFF_S,
            )  # fmt: skip
        self.delay = min(self.delay * 2, MAX_BACKOFF_S) if self.delay else 1.0
        return self.delay

    def succeeded(self) -> None:
        if self.delay:
            log.info("%s: works again", self.what)
        self.delay = 0.0


class Outbox:
    """Answers of the tasks the poll loop waits for, which the next poll carries; a task that
    ends after the wait delivers its answer on its own."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._expected: set[str] = set()
        self._answers: list[dict[str, Any]] = []

    def expect(self, task_ids: Iterable[str]) -> None:
        """Wait for these tasks at the next :meth:`collect` (call before starting them)."""
        with self._ready:
            self._expected = set(task_ids)

    def offer(self, answer: dict[str, Any]) -> bool:
        """Keep ``answer`` for the next poll if its task is waited for; False: send it now."""
        with self._ready:
            if answer["task_id"] not in self._expected:
                return False
            self._expected.discard(answer["task_id"])
            self._answers.append(answer)
            self._ready.notify()
            return True

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """The answers offered until every expected one is in or ``timeout`` passed."""
        with self._ready:
            self._ready.wait_for(lambda: not self._expected, timeout)
            self._expected.clear()
            answers, self._answers = self._answers, []
        return answers


class Agent:
    """Polls one hub for one node (see the module docstring)."""

    def __init__(self, service: NodeService, *, wait_s: float = 25.0, workers: int = 4) -> None:
        home = service.node.home
        self.membership = Membership.read(home)
        self.client = httpx.Client(timeout=httpx.Timeout(wait_s + 15.0))
        self.channel = HubChannel(home, self.membership, self.client)
        self.context = AgentContext(service, self.membership.node_id)
        self.wait_s = wait_s
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="oncofed-task")
        self.stopping = threading.Event()
        self.outbox = Outbox()
        self.carried: list[dict[str, Any]] = []  # answers the next poll carries
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll in a background thread (the node server does this)."""
        self._thread = threading.Thread(target=self.run, name="oncofed-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, wait for running tasks, release the connection."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_s + 20.0)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
        self.channel.close()

    def run(self) -> None:
        """Poll until stopped; answers still carried at the end are sent on their own."""
        backoff = Backoff(f"hub {self.membership.hub_url}")
        while not self.stopping.is_set():
            try:
                self.poll_once()
                backoff.succeeded()
            except (httpx.HTTPError, OncofedError) as exc:
                self.stopping.wait(backoff.failed(exc))
        carried, self.carried = self.carried, []
        for answer in carried:
            self._deliver(answer)

    def poll_once(self) -> int:
        """One long poll carrying the answers ready; its tasks are started in the pool and the
        answers of those done within ``GATHER_S`` kept for the next poll. Returns how many
        tasks arrived."""
        carried, self.carried = self.carried, []
        body: dict[str, Any] = {"wait_s": self.wait_s}
        if carried:
            body["answers"] = carried
        try:
            reply = self.channel.call("poll", "poll", body, "tasks", timeout=self.wait_s + 15.0)
        except httpx.HTTPError:
            self.carried = carried  # maybe not stored: resent, the hub takes a resend once
            raise
        except OncofedError:
            self._deliver_apart(carried)  # refused: alone, a bad answer cannot block polling
            raise
        answered = reply.body.get("answered") or {}
        self._deliver_apart([a for a in carried if a["task_id"] not in answered])  # older hub
        for task_id, outcome in answered.items():
            if outcome not in ("accepted", "duplicate"):
                log.error("answer to task %s refused: %s", task_id, outcome)
        tasks = reply.body.get("tasks", [])
        if tasks:
            self.outbox.expect(str(task.get("task_id")) for task in tasks)
            for task in tasks:
                self.pool.submit(self._run, task)
            self.carried += self.outbox.collect(GATHER_S)
        return len(tasks)

    def _deliver_apart(self, answers: list[dict[str, Any]]) -> None:
        for answer in answers:
            self.pool.submit(self._deliver, answer)

    def _run(self, task: dict[str, Any]) -> None:
        answer = self._answer(task)
        if not self.outbox.offer(answer):
            self._deliver(answer)

    def _answer(self, task: dict[str, Any]) -> dict[str, Any]:
        """The handler's result (or error) for ``task``, as the hub expects it."""
        kind, task_id = str(task.get("kind")), str(task.get("task_id"))
        answer: dict[str, Any] = {"task_id": task_id}
        function = HANDLERS.get(kind)
        try:
            if function is None:
                raise OncofedError(f"this node has no handler for {kind!r} tasks")
            answer["result"] = function(self.context, dict(task.get("body") or {}))
        except OncofedError as exc:
            answer["error"] = f"{exc.code}: {exc.message}"
        except Exception as exc:  # a handler bug must not end the agent: report it
            log.exception("task %s (%s) failed", task_id, kind)
            answer["error"] = f"internal error: {type(exc).__name__}"
        return answer

    def _deliver(self, answer: dict[str, Any]) -> None:
        """Send an answer, retrying while the hub is unreachable (it may be restarting); the
        hub keeps the first answer, so a retry never counts twice."""
        backoff = 1.0
        for _ in range(ANSWER_TRIES):
            try:
                self.channel.call("answer", "answer", answer, "answered")
                return
            except OncofedError as exc:  # refused: sending it again would not help
                log.error("answer to task %s refused: %s", answer["task_id"], exc)
                return
            except httpx.HTTPError as exc:
                log.warning("answer to task %s not delivered: %s", answer["task_id"], exc)
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def run_agent(home: Path, *, wait_s: float = 25.0, handlers: list[str] | None = None) -> None:
    """Run an agent for the node at ``home`` in this thread until interrupted."""
    load_handler_modules(handlers)
    with NodeService.open(home) as service:
        agent = Agent(service, wait_s=wait_s)
        try:
            agent.run()
        finally:
            agent.stop()
