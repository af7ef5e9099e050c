"""Reading a stopped hub's audit chain (``oncofed hub audit verify|show``).

The hub writes its audit log with :class:`oncofed.catalog.audit.AuditLog`, the chain nodes use,
into ``hub.duckdb`` with its head in ``audit.head``. Checking it opens the database read-only,
so a running hub (which holds the file) must be stopped first, as for a node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from oncofed.catalog.audit import AuditLog
from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.hub.service import SETTINGS_FILE

DATABASE, HEAD = "hub.duckdb", "audit.head"


@contextmanager
def hub_audit(home: Path) -> Iterator[AuditLog]:
    """The audit log of the hub at ``home``, opened read-only."""
    if not (home / SETTINGS_FILE).is_file() or not (home / DATABASE).is_file():
        raise NodeNotFoundError(f"{home} is not an oncofed hub (no {SETTINGS_FILE}/{DATABASE})")
    try:
        con = duckdb.connect(str(home / DATABASE), read_only=True)
    except duckdb.IOException as exc:
        raise ConfigError(f"cannot open {home / DATABASE} (is the hub running?): {exc}") from exc
    try:
        yield AuditLog(con, home / HEAD)
    finally:
        con.close()
