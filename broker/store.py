"""The broker's stored records (the operations on them are :mod:`broker.storage`'s services).

Times are seconds since the epoch (UTC), passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import ErrorCode

from .errors import BrokerError


class StorageUnavailable(BrokerError):
    """The storage could not do the operation (disk full, read-only file system, I/O error): nothing
    was stored, and the same request may succeed later. Code ``storage_unavailable``; the peer is
    told so honestly instead of getting a bare ``internal`` (issue 12)."""

    code = ErrorCode.STORAGE_UNAVAILABLE

    def __init__(self, message: str = "the broker cannot store data right now", *, retry_after: float = 60.0):
        super().__init__(message, retry_after=retry_after)


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # 第18条: up to 6 months
    TERMINATED = "terminated"  # 第20条 / 第21条


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    contract_id: str
    status: SubscriberStatus
    created_at: float
    status_changed_at: float
    suspended_until: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollmentToken:
    token_hash: str
    contract_id: str
    created_at: float
    expires_at: float
    used_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRecord:
    serial: str
    """Lower-case hex: the client certificate ID of 別紙5 (2)."""
    contract_id: str
    machine_name: str
    cert_pem: str
    issued_at: float
    not_after: float
    revoked_at: float | None = None
    revoke_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceChange:
    """An agent connected (``online``) or left this node (``node``) at ``now``, from ``peer``."""

    serial: str
    online: bool
    now: float
    peer: str
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPresence:
    serial: str
    contract_id: str
    machine_name: str
    online: bool
    last_seen: float | None
    revoked: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryRecord:
    """One inventory report as stored: both blobs are AES-GCM ciphertext (第30条, 第32条)."""

    id: int
    contract_id: str
    serial: str
    session_id: str
    at: float
    items_blob: bytes
    credentials_blob: bytes | None
