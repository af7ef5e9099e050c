"""The hub's periodic governance sweep: grants past their expiry end, owed grant tasks go out.

It runs as a task on the hub's event loop for as long as the app is served (the broker's
wake-ups belong to that loop). A sweep that fails is logged and retried on the next tick, so a
passing database hiccup never stops expiry for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from oncofed.hub.governance import Governance

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 60.0


def sweep(governance: Governance) -> int:
    """One sweep: expire what is due, then send any grant task still owed; returns how many
    requests expired."""
    expired = governance.expire_due()
    governance.catch_up()
    return len(expired)


async def _sweep_forever(governance: Governance, every_s: float) -> None:
    while True:
        try:
            expired = sweep(governance)
        except Exception:  # whatever broke, expiry must not stop for good: log, retry next tick
            log.exception("governance sweep failed; retrying in %.0f s", every_s)
        else:
            if expired:
                log.info("governance sweep: %d grant(s) expired", expired)
        await asyncio.sleep(every_s)


@asynccontextmanager
async def sweeping(governance: Governance, every_s: float) -> AsyncIterator[None]:
    """Sweep every ``every_s`` seconds (the first at once) while the block runs."""
    task = asyncio.create_task(_sweep_forever(governance, every_s), name="governance-sweep")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
