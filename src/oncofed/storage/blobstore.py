"""Content-addressed blob store on the local file system.

A blob lives at ``objects/<aa>/<bb>/<sha256>``. Writes go to ``tmp/`` first, are fsynced, then
renamed into place, so a reader never sees a half-written blob, even after SIGKILL or power loss.
The folders are not fsynced after each rename: a blob's bytes are on disk when ``put`` returns,
and its name survives any crash of the process at once and a power loss once the file system
commits its journal (ext4: within 5 s). The catalog rows naming a blob are written after it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from oncofed.errors import StoreError

_DIGEST = re.compile(r"[0-9a-f]{64}")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_FSYNC_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="blob-fsync")
"""Concurrent fsyncs: the kernel commits them together (16 in flight: ~0.2 ms a blob measured
on this project's VM, against ~4 ms for fsyncs one after another)."""
WRITE_BYTES = 1 << 20
"""Largest single ``write``: from ~2 MB on, the kernel took ~10x longer a byte (15.7 MB in one
call 42-55 ms, in 1 MB calls 3.5-5 ms; ext4, measured on the 2-core VM)."""


class SourceChangedError(StoreError):
    """A file changed between being read and being copied into the store."""

    code = "source_changed"


def sha256_hex(data: bytes) -> str:
    """The store's content address of ``data``."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Immutable blobs addressed by the SHA-256 of their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self._folders: set[Path] = set()
        """Blob folders known to exist: one mkdir per folder, not per blob."""

    def create(self) -> None:
        """Create the store's folders (idempotent)."""
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        if not _DIGEST.fullmatch(digest):
            raise StoreError(f"not a sha256 digest: {digest!r}")
        return self.objects / f"{digest[:2]}/{digest[2:4]}/{digest}"

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self.path_for(digest).is_file()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` atomically and durably; return its digest. Storing twice is a no-op."""
        digest = digest or sha256_hex(data)
        self.put_many([(data, digest)])
        return digest

    def put_many(self, blobs: Sequence[tuple[bytes, str]], *, sync: bool = True) -> None:
        """Store each (data, digest) atomically and durably, fsynced together.

        Every temporary is written first, then all are fsynced at once (concurrent fsyncs share
        the file system's journal commits: one flush wait instead of one per blob), then each is
        renamed into place. On error, no temporary is left; blobs already renamed stay.
        ``sync=False`` leaves the fsync to a later :meth:`sync` (the blobs survive a crash of
        the process at once, a power loss only once synced). A blob present with another size
        (cut short by a power loss before its sync) is written again.
        """
        wanted = {digest: data for data, digest in blobs if self._size(digest) != len(data)}
        written: dict[str, tuple[int, Path]] = {}
        try:
            for digest, data in wanted.items():
                # Written here rather than with storage.atomic: a unique name instead of
                # mkstemp's retries, and the folder made once per process.
                temporary = self.tmp / f"{digest[:16]}.{uuid.uuid4().hex[:16]}.part"
                written[digest] = (os.open(temporary, _NEW_FILE, 0o644), temporary)
                _write_all(written[digest][0], data)
            if sync:
                _fsync_all([fd for fd, _ in written.values()])
            for digest, (_, temporary) in written.items():
                self._place(temporary, self.path_for(digest))
        except OSError as exc:
            for _, temporary in written.values():
                temporary.unlink(missing_ok=True)
            more = f" and {len(wanted) - 1} more" if len(wanted) > 1 else ""
            raise StoreError(
                f"cannot store blob {next(iter(wanted))}{more} under {self.root}: {exc}"
            ) from exc
        finally:
            for fd, _ in written.values():
                os.close(fd)

    def sync(self, digests: Sequence[str]) -> None:
        """fsync stored blobs (written by ``put_many(..., sync=False)``) concurrently."""
        paths = [self.path_for(digest) for digest in dict.fromkeys(digests)]
        try:
            if len(paths) == 1:
                _fsync_path(paths[0])
            elif paths:
                list(_FSYNC_POOL.map(_fsync_path, paths))
        except OSError as exc:
            raise StoreError(f"cannot fsync blobs under {self.root}: {exc}") from exc

    def _size(self, digest: str) -> int | None:
        """The stored blob's size in bytes (None: not stored)."""
        try:
            return self.path_for(digest).stat().st_size
        except FileNotFoundError:
            return None

    def put_copy(self, source: Path, digest: str) -> str:
        """Store a copy of the file ``source`` whose bytes hash to ``digest``.

        The copy is made in the kernel (see :func:`_kernel_copy`), several times faster than
        writing the bytes from Python; it is hashed again before it becomes visible, so a source
        changed after it was read is refused, not stored under a wrong name.
        """
        target = self.path_for(digest)
        if target.is_file():
            return digest
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix=digest[:16], suffix=".part")
        os.close(fd)
        temporary = Path(tmp_name)
        try:
            _kernel_copy(source, temporary)
            with temporary.open("rb") as handle:
                copied = hashlib.file_digest(handle, "sha256").hexdigest()
            if copied != digest:
                raise SourceChangedError(f"{source} changed while it was being stored")
            return self.put_file(temporary, digest)
        except OSError as exc:
            raise StoreError(f"cannot store {source} as blob {digest}: {exc}") from exc
        finally:
            temporary.unlink(missing_ok=True)

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
            self._place(source, target)
        except OSError as exc:
            raise StoreError(f"cannot store {source} as blob {digest}: {exc}") from exc
        return digest

    def _place(self, temporary: Path, target: Path) -> None:
        """Rename a written, fsynced temporary to its blob path (atomic on one file system)."""
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        os.replace(temporary, target)

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


def _write_all(fd: int, data: bytes) -> None:
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written : written + WRITE_BYTES])


def _fsync_all(fds: list[int]) -> None:
    """fsync every descriptor: in this thread for one, concurrently for more."""
    if len(fds) == 1:
        os.fsync(fds[0])
    elif fds:
        list(_FSYNC_POOL.map(os.fsync, fds))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kernel_copy(source: Path, target: Path) -> None:
    """Copy with ``copy_file_range`` (in-kernel, as ``cp`` does; Python 3.11's shutil uses
    ``sendfile``, measured 2-3x slower here), falling back to shutil where it is unsupported."""
    with source.open("rb") as src, target.open("wb") as dst:
        remaining = os.fstat(src.fileno()).st_size
        try:
            while remaining > 0:
                copied = os.copy_file_range(src.fileno(), dst.fileno(), remaining)
                if copied == 0:
                    break
                remaining -= copied
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
    shutil.copyfile(source, target)
