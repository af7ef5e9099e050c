"""The per-node key file and the keyed pseudonym, UID and date-offset derivations."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from oncofed.deid.keys import KeyFileError, Keyring, load_key, node_key


def test_node_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    first = node_key(tmp_path)
    path = tmp_path / "secrets" / "deid.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert node_key(tmp_path) == first == load_key(path)


def test_open_or_malformed_keys_are_refused(tmp_path: Path) -> None:
    node_key(tmp_path)
    path = tmp_path / "secrets" / "deid.key"
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_key(path)
    os.chmod(path, 0o600)
    path.write_text("not hex\n")
    with pytest.raises(KeyFileError, match="not hexadecimal"):
        load_key(path)


def test_derivations_are_stable_per_key_and_differ_across_keys() -> None:
    one, same, other = Keyring(b"a" * 32), Keyring(b"a" * 32), Keyring(b"b" * 32)
    assert one.pseudonym("id::FAKEID1") == same.pseudonym("id::FAKEID1")
    assert one.pseudonym("id::FAKEID1") != other.pseudonym("id::FAKEID1")
    assert one.pseudonym("id::FAKEID1") != one.pseudonym("id::FAKEID2")
    uid = one.uid("1.2.826.0.1.3680043.10.999.1.2")
    assert (
        uid.startswith("2.25.")
        and len(uid) <= 64
        and uid == same.uid("1.2.826.0.1.3680043.10.999.1.2")
    )
    assert one.uid("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"  # DICOM-defined UIDs stay
    offsets = {one.day_offset(f"id::{n}") for n in range(200)}
    assert all(-3650 <= d <= -365 for d in offsets) and len(offsets) > 150
