"""Atomic file writes: temp file in the target's folder (or a given one), fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(target: Path, data: bytes | str, *, tmp_dir: Path | None = None) -> Path:
    """Write ``data`` to ``target`` so readers see the old file or the whole new one, never a
    part; ``tmp_dir`` must be on the same file system as ``target``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=tmp_dir or target.parent, prefix=f".{target.name[:16]}", suffix=".part"
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def fsync_dir(folder: Path) -> None:
    """Make a rename or new entry in ``folder`` durable (fsync of the directory itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
