"""A persistent cache of seen message nonces, so a replay is refused even after a hub restart.

Each (sender, nonce) is kept until its message's timestamp leaves the skew window: after that the
message is refused as stale anyway, so the row can go. SQLite (WAL) makes it safe for several
threads and processes.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from oncofed.hub.errors import ReplayError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_nonce (
    sender TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (sender, nonce)
);
CREATE INDEX IF NOT EXISTS seen_nonce_expiry ON seen_nonce (expires_at);
"""


class NonceCache:
    """Seen nonces in an SQLite file; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        # Commits reach the OS, not the disk: a crashed process loses nothing; a power loss may
        # forget the last nonces, replayable only within the clock-skew window. An fsync per
        # message would cost ~4 ms on every signed request.
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def remember(self, sender: str, nonce: str, expires_at: datetime, now: datetime) -> None:
        """Record a nonce; raises :class:`ReplayError` if it was seen and has not expired."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute("DELETE FROM seen_nonce WHERE expires_at <= ?", [now.timestamp()])
                self._con.execute(
                    "INSERT INTO seen_nonce (sender, nonce, expires_at) VALUES (?, ?, ?)",
                    [sender, nonce, expires_at.timestamp()],
                )
            except sqlite3.IntegrityError:
                self._con.execute("ROLLBACK")
                raise ReplayError(
                    f"message from {sender!r} reuses nonce {nonce!r}: refused as a replay"
                ) from None
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            row = self._con.execute("SELECT count(*) FROM seen_nonce").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database."""
        self._con.close()

    def __enter__(self) -> NonceCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
