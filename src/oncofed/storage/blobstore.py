"""Content-addressed blob store on the local file system.

A blob lives at ``objects/<aa>/<bb>/<sha256>``. Writes go to ``tmp/`` first, are fsynced, then
renamed into place, so a reader never sees a half-written blob, even after SIGKILL or power loss.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from oncofed.errors import StoreError
from oncofed.storage.atomic import write_atomic


def sha256_hex(data: bytes) -> str:
    """The store's content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Immutable blobs addressed by the SHA-256 of their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def create(self) -> None:
        """Create the store's folders (idempotent)."""
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StoreError(f"not a sha256 digest: {digest!r}")
        return self.objects / digest[:2] / digest[2:4] / digest

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.path_for(digest).is_file()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` atomically and durably; return its digest. Storing twice is a no-op."""
        digest = digest or sha256_hex(data)
        target = self.path_for(digest)
        if target.is_file():
            return digest
        try:
            write_atomic(target, data, tmp_dir=self.tmp)
        except OSError as exc:
            raise StoreError(f"cannot store blob {digest} under {self.root}: {exc}") from exc
        return digest

    def put_file(self, source: Path, digest: str) -> str:
        """Move ``source`` (a file under this store's ``tmp/``) into place as blob ``digest``.

        The caller hashed the file; it is fsynced, then renamed, so the move is atomic. When the
        blob exists already, ``source`` is deleted instead.
        """
        target = self.path_for(digest)
        try:
            if target.is_file():
                source.unlink()
                return digest
            with source.open("rb") as handle:
                os.fsync(handle.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except OSError as exc:
            raise StoreError(f"cannot store {source} as blob {digest}: {exc}") from exc
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a stored blob."""
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"blob {digest} is not in the store at {self.root}") from exc

    def remove_stale_temporaries(self) -> int:
        """Delete leftovers of interrupted writes; return how many were removed."""
        removed = 0
        for leftover in self.tmp.glob("*.part*"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed
