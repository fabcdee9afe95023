"""The records of operator accounts (:mod:`broker.operators`): an ``operators`` row as the store
returns it, what an admin hands to a new operator, a login's result, the identity behind a token,
and the roles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from protocol.errors import ErrorCode

from .errors import RefusedError

__all__ = [
    "ROLES",
    "LoginResult",
    "NewOperator",
    "OperatorIdentity",
    "OperatorRecord",
    "Role",
    "hash_token",
    "identity_of",
    "parse_role",
]

Role = Literal["operator", "supervisor", "admin"]


ROLES: Final[tuple[str, ...]] = get_args(Role)


_ROLE_BY_NAME: Final[dict[str, Role]] = {"operator": "operator", "supervisor": "supervisor", "admin": "admin"}


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorRecord:
    """One row of ``operators`` as the store returns it."""

    name: str
    display_name: str
    role: Role
    password_hash: str = field(repr=False)
    totp_secret_blob: bytes = field(repr=False)
    created_at: float
    password_change_required: bool
    failed_logins: int
    locked_until: float | None
    last_totp_step: int | None
    disabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOperator:
    """What an admin hands to a new operator, once: nothing here is stored in the clear."""

    name: str
    initial_password: str = field(repr=False)
    """One-time: the operator must change it at first login."""
    totp_uri: str = field(repr=False)
    """``otpauth://totp/…`` for an authenticator app (shown as a QR code or typed in)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginResult:
    token: str = field(repr=False)
    expires_at: float
    name: str
    display_name: str
    role: Role
    password_change_required: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorIdentity:
    """Who holds a valid token."""

    name: str
    display_name: str
    role: Role
    expires_at: float
    password_change_required: bool


def hash_token(token: str) -> str:
    """SHA-256 hex: enough for a 256-bit random token (no salt or stretching needed, unlike passwords)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_role(role: str) -> Role:
    """A role from user input (CLI, console), or ``RefusedError(INVALID_FIELD)``."""
    checked = _ROLE_BY_NAME.get(role)
    if checked is not None:
        return checked
    raise RefusedError(f"role must be one of {', '.join(ROLES)}", code=ErrorCode.INVALID_FIELD)


def identity_of(
    found: tuple[OperatorRecord, float, float | None] | None, now: float
) -> OperatorIdentity | None:
    if found is None:
        return None
    record, expires_at, revoked_at = found
    if revoked_at is not None or now >= expires_at or record.disabled:
        return None
    return OperatorIdentity(
        name=record.name,
        display_name=record.display_name,
        role=record.role,
        expires_at=expires_at,
        password_change_required=record.password_change_required,
    )
