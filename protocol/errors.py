"""Errors of the protocol core, each with a stable code.

The code is what crosses the wire (in an ``error`` message or a WebSocket close reason) and what
clients, tests and the operators' runbooks match on; the text is for people and may change.

Tree::

    ProtocolError                       (sans-I/O; code)
    ├── RemoteProtocolError             the peer sent something wrong
    │   ├── MalformedMessage            "malformed"          not JSON / not the binary layout
    │   ├── MessageTooLarge             "too_large"          over a size limit
    │   ├── UnknownMessageType          "unknown_type"       ``type`` names no message
    │   ├── InvalidField                "invalid_field"      a field is missing, mistyped or out of range
    │   │   └── InvalidArguments        "invalid_field"      a message built with a missing, unknown or
    │   │                                                    positional argument (also a ``TypeError``)
    │   ├── UnsupportedVersion          "unsupported_version"
    │   └── UnexpectedMessage           "unexpected_message" valid message, wrong state (h11 style)
    └── LocalProtocolError              we tried to do something the state forbids
        └── InvalidState                "invalid_state"

Only adapters (``broker/``, ``agent/``) turn these into ``error`` messages or close codes.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every stable error code used on the wire, by any package.

    Codes are lower-case ASCII, never renamed once shipped. Adapters and the broker's policy layer
    reuse this enum so a client has one table to translate (see ``agent/i18n.py``).
    """

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNEXPECTED_MESSAGE = "unexpected_message"
    INVALID_STATE = "invalid_state"
    # enrollment (/enroll); codes, not secrets (ruff S105 is a false positive here)
    TOKEN_UNKNOWN = "token_unknown"  # noqa: S105
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    TOKEN_USED = "token_used"  # noqa: S105
    BAD_CSR = "bad_csr"
    CSR_SUBJECT_MISMATCH = "csr_subject_mismatch"
    # agent authentication (/agent)
    CERT_REQUIRED = "cert_required"
    CERT_REVOKED = "cert_revoked"
    CERT_UNKNOWN = "cert_unknown"
    CERT_EXPIRED = "cert_expired"
    # contract state (第18条, 第20条, 第21条)
    SUBSCRIBER_SUSPENDED = "subscriber_suspended"
    SUBSCRIBER_TERMINATED = "subscriber_terminated"
    # policy
    RATE_LIMITED = "rate_limited"
    SERVICE_CLOSED = "service_closed"
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"
    # operators
    LOGIN_FAILED = "login_failed"
    ACCOUNT_LOCKED = "account_locked"
    AUTH_REQUIRED = "auth_required"
    CODE_INVALID = "code_invalid"
    CONSENT_REQUIRED = "consent_required"
    COLLEAGUE_UNKNOWN = "colleague_unknown"
    COLLEAGUE_OFFLINE = "colleague_offline"
    SELF_INVITE = "self_invite"
    IDLE_TIMEOUT = "idle_timeout"
    TOO_MANY_ERRORS = "too_many_errors"
    INTERNAL = "internal"
    # the broker's storage failed (disk full, read-only, I/O error): nothing was stored, retry later
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # remote input the subscriber's agent did not apply although control is granted (DESIGN §2):
    # a consent question is open or just closed, or it was aimed at the consent window or the
    # "being watched" indicator / the subscriber is using the keyboard or mouse themselves
    INPUT_PAUSED = "input_paused"
    SUBSCRIBER_BUSY = "subscriber_busy"


class ProtocolError(Exception):
    """Base of every error raised by ``protocol``; carries a stable :class:`ErrorCode`."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.value


class RemoteProtocolError(ProtocolError):
    """The peer's fault: the adapter answers with an ``error`` and may keep the connection."""


class LocalProtocolError(ProtocolError):
    """Our own fault: a bug in the caller, never the peer's."""


class MalformedMessage(RemoteProtocolError):
    code = ErrorCode.MALFORMED


class MessageTooLarge(RemoteProtocolError):
    code = ErrorCode.TOO_LARGE


class UnknownMessageType(RemoteProtocolError):
    code = ErrorCode.UNKNOWN_TYPE


class InvalidField(RemoteProtocolError):
    code = ErrorCode.INVALID_FIELD


class InvalidArguments(InvalidField, TypeError):
    """A message class called with a missing, unknown or positional argument: refused like any
    invalid field, and still the ``TypeError`` Python raises for a wrong call."""


class UnsupportedVersion(RemoteProtocolError):
    code = ErrorCode.UNSUPPORTED_VERSION


class UnexpectedMessage(RemoteProtocolError):
    code = ErrorCode.UNEXPECTED_MESSAGE


class InvalidState(LocalProtocolError):
    code = ErrorCode.INVALID_STATE
