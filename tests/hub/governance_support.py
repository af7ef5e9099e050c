"""A settable clock for the access-negotiation and governance tests."""

from __future__ import annotations

from datetime import datetime


class Clock:
    """Tells the time a test set: ``now`` moves only when the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
