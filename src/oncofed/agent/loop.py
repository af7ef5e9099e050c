"""The agent's loop: long-poll the hub, run each task's handler in a worker thread, answer.

The node only dials out (a hospital opens no port). A poll waits at the hub until work arrives or
``wait_s`` passes; tasks run in a thread pool so a slow one does not stop the polling; each answer
is a signed message, and the hub's replies are verified against its pinned key. Network trouble
backs off (1 s doubling to 10 s) and never ends the loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
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
# Modules whose import registers more handlers, loaded when they are installed.
OPTIONAL_HANDLER_MODULES = (
    "oncofed.agent.grants",
    "oncofed.tef.evaluate",
    "oncofed.tef.compare",
)


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
        """Poll until stopped."""
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                self.poll_once()
                backoff = 1.0
            except (httpx.HTTPError, OncofedError) as exc:
                log.warning("hub %s: %s; retrying in %.0f s", self.membership.hub_url, exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def poll_once(self) -> int:
        """One long poll; its tasks are started in the pool. Returns how many arrived."""
        reply = self.channel.call(
            "poll", "poll", {"wait_s": self.wait_s}, "tasks", timeout=self.wait_s + 15.0
        )
        tasks = reply.body.get("tasks", [])
        for task in tasks:
            self.pool.submit(self._run, task)
        return len(tasks)

    def _run(self, task: dict[str, Any]) -> None:
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
        self._deliver(answer)

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
