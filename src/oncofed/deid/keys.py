"""The per-node de-identification secret and the keyed derivations made from it.

The secret lives in ``<node>/secrets/deid.key`` (mode 0600), never in the catalog. Pseudonyms, UIDs
and date offsets are HMAC-SHA256 of the original value under this secret, so the same patient or UID
maps to the same output on every run of the same node, and to unrelated outputs on another node.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import stat
from pathlib import Path

from oncofed.errors import ConfigError

KEY_RELATIVE_PATH = Path("secrets") / "deid.key"
KEY_BYTES = 32
# Dates move back by 365..3650 days: never zero, so an original date can never survive by chance.
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3650
DICOM_ROOT = "1.2.840.10008."


class KeyFileError(ConfigError):
    """The de-identification key file is missing, malformed or readable by others."""

    code = "deid_key_error"


def create_key(path: Path) -> bytes:
    """Create a new random key at ``path`` (mode 0600, parent 0700); refuse to overwrite one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path}: a de-identification key already exists") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return secret


def load_key(path: Path) -> bytes:
    """Read the key at ``path``; it must be 64 hex digits and not readable by group or others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the de-identification key ({exc})") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(f"{path}: key file mode {stat.S_IMODE(mode):o} is too open; use 600")
    try:
        secret = bytes.fromhex(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: key is not hexadecimal") from exc
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"{path}: key has {len(secret)} bytes, expected {KEY_BYTES}")
    return secret


def node_key(node_dir: Path) -> bytes:
    """Return the node's key from ``<node_dir>/secrets/deid.key``, creating it on first use."""
    path = node_dir / KEY_RELATIVE_PATH
    return load_key(path) if path.exists() else create_key(path)


class Keyring:
    """Keyed derivations (HMAC-SHA256, one domain label per use) from one node secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, domain: bytes, value: str) -> bytes:
        return hmac.digest(self._secret, domain + b"\0" + value.encode("utf-8"), "sha256")

    def pseudonym(self, identity: str) -> str:
        """Return the patient pseudonym for ``identity`` (16 base32 characters after ``ANON``)."""
        digest = base64.b32encode(self._mac(b"oncofed/deid/v1/pseudonym", identity)).decode()
        return "ANON" + digest[:16]

    def uid(self, uid: str) -> str:
        """Return the replacement for an instance UID: ``2.25.<128-bit keyed integer>``."""
        if uid.startswith(DICOM_ROOT):
            return uid
        digest = self._mac(b"oncofed/deid/v1/uid", uid)
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    def day_offset(self, identity: str) -> int:
        """Return the per-patient date shift in days (negative: dates move into the past)."""
        digest = self._mac(b"oncofed/deid/v1/date-offset", identity)
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        return -(MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)
