"""Ed25519 key pairs of nodes and the hub, stored as PEM files.

The private key file is written atomically with mode 0600 and refused on load when group or
others may read it (as ssh does); the public key file (0644) is what gets registered at the hub.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from oncofed.hub.errors import KeyFileError
from oncofed.storage.atomic import write_atomic

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class KeyPaths:
    """Where a key pair lives: ``<name>.key.pem`` (private) and ``<name>.pub.pem`` (public)."""

    private: Path
    public: Path

    @classmethod
    def in_dir(cls, folder: Path, name: str = "node") -> KeyPaths:
        """The key pair ``name`` in ``folder``."""
        return cls(folder / f"{name}.key.pem", folder / f"{name}.pub.pem")


def generate_keypair(paths: KeyPaths) -> Ed25519PrivateKey:
    """Make a new key pair and write both PEM files; refuses to overwrite an existing key."""
    if paths.private.exists():
        raise KeyFileError(f"a private key exists already at {paths.private}; not overwriting it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(paths.private, private_pem)  # mkstemp creates the temp file 0600
    os.chmod(paths.private, PRIVATE_MODE)
    write_atomic(paths.public, public_pem(key.public_key()))
    os.chmod(paths.public, PUBLIC_MODE)
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a public key (what a node registers at the hub)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key; refuses files that group or others may access."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeyFileError(
            f"private key {path} has mode {mode:04o}; it must be private (chmod 600 {path})"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def parse_public_key(pem: bytes, source: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes (``source`` names them in errors)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from exc
    return parse_public_key(data, str(path))


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:<hex>`` of the raw public key, for comparing keys out of band at registration."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()
