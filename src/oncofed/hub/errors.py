"""Errors of the federation hub; each maps to a problem-details status through its base class."""

from __future__ import annotations

from oncofed.errors import AuthError, ConfigError, ConflictError, NotFoundError


class KeyFileError(ConfigError):
    """A key file is missing, malformed or readable by others than its owner."""

    code = "key_file_error"


class MessageError(AuthError):
    """A signed message was refused; subclasses say why."""

    code = "bad_message"


class MalformedEnvelopeError(MessageError):
    """The envelope is not valid JSON of the expected shape."""

    code = "malformed_envelope"


class UnknownSenderError(MessageError):
    """The sender id is not registered (or was removed)."""

    code = "unknown_sender"


class SignatureError(MessageError):
    """The signature does not match the sender's key over the canonical bytes."""

    code = "bad_signature"


class WrongRecipientError(MessageError):
    """The message was addressed to someone else."""

    code = "wrong_recipient"


class StaleMessageError(MessageError):
    """The timestamp is outside the accepted clock-skew window (too old or future-dated)."""

    code = "stale_message"


class ReplayError(MessageError):
    """The (sender, nonce) pair was seen before: the message is a replay."""

    code = "replayed_message"


class RequestNotFoundError(NotFoundError):
    """No access request has this id."""

    code = "request_not_found"


class TransitionError(ConflictError):
    """The access request is not in a state where this action is allowed."""

    code = "invalid_transition"
