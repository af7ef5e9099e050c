"""Signed node↔hub envelopes: keys on disk, valid messages, and every kind of refusal."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oncofed.errors import AuthError
from oncofed.hub.errors import (
    KeyFileError,
    MalformedEnvelopeError,
    ReplayError,
    SignatureError,
    StaleMessageError,
    UnknownSenderError,
    WrongRecipientError,
)
from oncofed.hub.keys import (
    KeyPaths,
    fingerprint,
    generate_keypair,
    load_private_key,
    load_public_key,
)
from oncofed.hub.nonces import NonceCache
from oncofed.hub.signing import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    Signer,
    StaticKeyRing,
    Verifier,
    canonical_json,
    parse_envelope,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
BODY = {"query": {"modality": ["CT"], "age": [50, 70]}, "note": "ünïcode", "ratio": 0.25}


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def node_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def nonces(tmp_path: Path) -> Iterator[NonceCache]:
    with NonceCache(tmp_path / "nonces.sqlite") as cache:
        yield cache


@pytest.fixture
def verifier(node_key: Ed25519PrivateKey, nonces: NonceCache, clock: Clock) -> Verifier:
    other = Ed25519PrivateKey.generate().public_key()
    keys = StaticKeyRing({"node-a": node_key.public_key(), "node-b": other})
    return Verifier("hub", keys, nonces, max_skew=timedelta(seconds=120), clock=clock)


def signed(key: Ed25519PrivateKey, at: datetime = T0, sender: str = "node-a") -> Envelope:
    return Signer(sender, key, clock=lambda: at).sign("hub", "cohort.count", BODY)


def as_dict(envelope: Envelope) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(envelope.to_json())
    return loaded


def test_key_pair_files_are_private_and_round_trip(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path / "keys")
    key = generate_keypair(paths)
    assert stat.S_IMODE(paths.private.stat().st_mode) == 0o600
    assert paths.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(paths.private)
    assert fingerprint(loaded.public_key()) == fingerprint(key.public_key())
    assert fingerprint(load_public_key(paths.public)) == fingerprint(key.public_key())
    with pytest.raises(KeyFileError, match="exists already"):
        generate_keypair(paths)


def test_readable_private_key_is_refused(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path)
    generate_keypair(paths)
    paths.private.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(paths.private)


def test_non_ed25519_or_garbage_key_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a key")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        load_private_key(bad)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


def test_valid_message_passes(verifier: Verifier, node_key: Ed25519PrivateKey) -> None:
    envelope = signed(node_key)
    message = verifier.verify(envelope.to_json(), kind="cohort.count")
    assert message.sender == "node-a"
    assert message.body == BODY
    assert message.timestamp == T0
    assert envelope.timestamp == "2025-03-01T12:00:00.000000Z"


def test_canonical_bytes_ignore_key_order_and_whitespace(
    verifier: Verifier, node_key: Ed25519PrivateKey
) -> None:
    raw = as_dict(signed(node_key))
    reordered = json.dumps(dict(reversed(list(raw.items()))), indent=2).encode()
    assert verifier.verify(reordered).body == BODY
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", {**BODY, "note": "changed"}),
        ("body", {**BODY, "extra": True}),
        ("sender", "node-b"),
        ("kind", "cohort.series"),
        ("nonce", "A" * 22),
        ("timestamp", "2025-03-01T12:00:01.000000Z"),
    ],
)
def test_tampered_message_is_refused(
    verifier: Verifier, node_key: Ed25519PrivateKey, field: str, value: Any
) -> None:
    raw = as_dict(signed(node_key))
    raw[field] = value
    with pytest.raises(SignatureError, match="does not verify"):
        verifier.verify(raw)


def test_forged_and_wrong_key_messages_are_refused(
    verifier: Verifier, node_key: Ed25519PrivateKey
) -> None:
    raw = as_dict(signed(node_key))
    raw["signature"] = "A" * 86
    with pytest.raises(SignatureError):
        verifier.verify(raw)
    raw["signature"] = "not base64!"
    with pytest.raises(SignatureError):
        verifier.verify(raw)
    impostor = signed(Ed25519PrivateKey.generate())  # claims to be node-a, other key
    with pytest.raises(SignatureError, match="another key"):
        verifier.verify(impostor.to_json())


def test_unknown_sender_is_refused(verifier: Verifier) -> None:
    stranger = signed(Ed25519PrivateKey.generate(), sender="node-z")
    with pytest.raises(UnknownSenderError, match="'node-z' is not registered"):
        verifier.verify(stranger.to_json())


def test_message_for_someone_else_is_refused(
    verifier: Verifier, node_key: Ed25519PrivateKey
) -> None:
    other = Signer("node-a", node_key, clock=lambda: T0).sign("node-b", "cohort.count", BODY)
    with pytest.raises(WrongRecipientError, match="not to 'hub'"):
        verifier.verify(other.to_json())


def test_unexpected_kind_is_refused(verifier: Verifier, node_key: Ed25519PrivateKey) -> None:
    with pytest.raises(MalformedEnvelopeError, match=r"expected a 'job\.result'"):
        verifier.verify(signed(node_key).to_json(), kind="job.result")


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-121, False), (-120, True), (0, True), (120, True), (121, False), (-86400, False)],
)
def test_skew_window(
    verifier: Verifier, node_key: Ed25519PrivateKey, offset: int, accepted: bool
) -> None:
    envelope = signed(node_key, at=T0 + timedelta(seconds=offset))
    if accepted:
        verifier.verify(envelope.to_json())
    else:
        with pytest.raises(StaleMessageError, match="more than 120 s"):
            verifier.verify(envelope.to_json())


def test_replay_is_refused(verifier: Verifier, node_key: Ed25519PrivateKey, clock: Clock) -> None:
    envelope = signed(node_key)
    verifier.verify(envelope.to_json())
    clock.now = T0 + timedelta(seconds=60)
    with pytest.raises(ReplayError, match="replay"):
        verifier.verify(envelope.to_json())
    clock.now = T0 + timedelta(seconds=600)  # nonce forgotten, but the message is stale by now
    with pytest.raises(StaleMessageError):
        verifier.verify(envelope.to_json())


def test_refusals_are_auth_errors_with_stable_codes(verifier: Verifier) -> None:
    with pytest.raises(AuthError) as caught:
        verifier.verify(b"{")
    assert caught.value.code == "malformed_envelope"


def test_nonce_cache_survives_reopen(tmp_path: Path, node_key: Ed25519PrivateKey) -> None:
    keys = StaticKeyRing({"node-a": node_key.public_key()})
    envelope = signed(node_key)
    with NonceCache(tmp_path / "n.sqlite") as first:
        Verifier("hub", keys, first, clock=lambda: T0).verify(envelope.to_json())
    with NonceCache(tmp_path / "n.sqlite") as reopened:
        assert len(reopened) == 1
        with pytest.raises(ReplayError):
            Verifier("hub", keys, reopened, clock=lambda: T0).verify(envelope.to_json())


def test_expired_nonces_are_purged(nonces: NonceCache) -> None:
    nonces.remember("node-a", "n" * 22, T0 + timedelta(seconds=10), T0)
    nonces.remember("node-a", "m" * 22, T0 + timedelta(seconds=30), T0 + timedelta(seconds=20))
    assert len(nonces) == 1


def test_forged_messages_do_not_burn_nonces(
    verifier: Verifier, node_key: Ed25519PrivateKey, nonces: NonceCache
) -> None:
    envelope = signed(node_key)
    forged = {**as_dict(envelope), "signature": "A" * 86}
    with pytest.raises(SignatureError):
        verifier.verify(forged)
    assert len(nonces) == 0
    verifier.verify(envelope.to_json())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "unsupported envelope version"),
        ({"v": True}, "unsupported envelope version"),
        ({"body": [1]}, "body must be a JSON object"),
        ({"timestamp": "2025-03-01T12:00:00Z"}, "'timestamp' is malformed"),
        ({"timestamp": "2025-13-01T12:00:00.000000Z"}, "is not a date"),
        ({"nonce": "short"}, "'nonce' is malformed"),
        ({"sender": "bad id"}, "invalid sender id"),
        ({"kind": 5}, "'kind' must be a string"),
        ({"extra": 1}, "differ from the expected"),
    ],
)
def test_malformed_envelopes_are_refused(
    node_key: Ed25519PrivateKey, change: dict[str, Any], message: str
) -> None:
    raw = {**as_dict(signed(node_key)), **change}
    with pytest.raises(MalformedEnvelopeError, match=message):
        parse_envelope(raw)


def test_non_json_input_is_refused(node_key: Ed25519PrivateKey) -> None:
    with pytest.raises(MalformedEnvelopeError, match="not valid JSON"):
        parse_envelope(b'{"v": NaN}')
    with pytest.raises(MalformedEnvelopeError, match="JSON object"):
        parse_envelope(b"[1]")
    with pytest.raises(MalformedEnvelopeError, match="not plain JSON"):
        Signer("node-a", node_key).sign("hub", "x", {"bad": float("nan")})


def test_other_key_types_and_missing_public_key_are_refused(tmp_path: Path) -> None:
    ec = ec_key()
    private = tmp_path / "ec.key.pem"
    private.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_private_key(private)
    public = tmp_path / "ec.pub.pem"
    public.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_public_key(public)
    with pytest.raises(KeyFileError, match="cannot read public key"):
        load_public_key(tmp_path / "missing.pub.pem")


def test_signer_checks_its_inputs(node_key: Ed25519PrivateKey) -> None:
    with pytest.raises(MalformedEnvelopeError, match="invalid message kind"):
        Signer("node-a", node_key).sign("hub", "Bad Kind", {})
    with pytest.raises(ValueError, match="timezone-aware"):
        Signer("node-a", node_key, clock=lambda: datetime(2025, 1, 1)).sign("hub", "x", {})
    assert Signer("node-a", node_key).sign("hub", "x", {}).timestamp.endswith("Z")


def test_oversized_envelope_is_refused() -> None:
    with pytest.raises(MalformedEnvelopeError, match="over the limit"):
        parse_envelope(b" " * (MAX_ENVELOPE_BYTES + 1))


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
