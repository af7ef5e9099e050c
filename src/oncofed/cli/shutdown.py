"""Stopping a served process with SIGTERM as cleanly as with Ctrl-C."""

from __future__ import annotations

import signal
import sys


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM end the process through ``sys.exit``, so ``with`` blocks close.

    uvicorn stops on SIGTERM, then raises it again with the handler it found: by default that
    ends the process at once, before anything after ``uvicorn.run`` (closing the node or hub)
    has run.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
