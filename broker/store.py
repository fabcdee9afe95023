"""The broker's storage interface: records and the operations on them.

One interface (a ``Protocol``) so the embedded SQLite store and the multi-node PostgreSQL store
(DESIGN §6) are interchangeable; the server and the CLI see only this. Every operation that
changes more than one row is one transaction: a refusal or a crash leaves nothing half-written.
Times are seconds since the epoch (UTC), passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from protocol.errors import ErrorCode

from .audit import AuditEntry, ChainReport
from .errors import BrokerError
from .operators import OperatorStore


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


class Store(OperatorStore, Protocol):
    """What the broker needs from storage. See :class:`broker.sqlite_store.SQLiteStore`."""

    # subscribers (第7条: one contract per ID)
    def add_subscriber(self, contract_id: str, *, now: float, actor: str) -> Subscriber: ...
    def get_subscriber(self, contract_id: str) -> Subscriber | None: ...
    def list_subscribers(self) -> list[Subscriber]: ...
    def set_subscriber_status(
        self,
        contract_id: str,
        status: SubscriberStatus,
        *,
        now: float,
        actor: str,
        until: float | None = None,
        reason: str = "",
    ) -> list[str]:
        """Change status; on TERMINATED, revoke every certificate (returned serials), one transaction."""
        ...

    # enrollment
    def add_enrollment_token(
        self, contract_id: str, token_hash: str, *, now: float, expires_at: float, actor: str
    ) -> None: ...
    def get_enrollment_token(self, token_hash: str) -> EnrollmentToken | None: ...
    def complete_enrollment(self, token_hash: str, certificate: CertificateRecord, *, now: float) -> None:
        """Atomically: token still valid and unused → mark used, store certificate, audit."""
        ...

    # certificates
    def get_certificate(self, serial: str) -> CertificateRecord | None: ...
    def list_certificates(self, contract_id: str | None = None) -> list[CertificateRecord]: ...
    def revoke_certificate(self, serial: str, *, now: float, actor: str, reason: str) -> bool: ...
    def revoked_serials(self) -> list[tuple[str, float]]: ...

    # presence
    def set_online(self, serial: str, *, online: bool, now: float, peer: str, node: str) -> None: ...
    def touch(self, serials: list[str], *, now: float) -> None: ...
    def mark_node_offline(self, node: str, *, now: float) -> int: ...
    def list_agents(self) -> list[AgentPresence]: ...
    def update_machine_name(self, serial: str, machine_name: str) -> None: ...

    # audit (append-only, hash-chained)
    def append_audit(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int: ...
    def audit_entries(self, *, subject: str | None = None) -> Iterator[AuditEntry]: ...
    def verify_audit(self) -> ChainReport: ...
    def audit_head(self) -> tuple[int, str] | None:
        """The verified head (last seq and MAC), or None when empty or damaged (checkpoints)."""
        ...

    def audit_hash_at(self, seq: int) -> str | None: ...
    def count_audit(self, *, action: str, subject: str, since: float) -> int: ...
    def audit_page(self, *, subject: str | None, limit: int, before_seq: int | None) -> list[AuditEntry]:
        """Newest first."""
        ...

    # inventory (別紙5), encrypted by the caller; the store never sees plaintext
    def save_inventory(
        self,
        *,
        contract_id: str,
        serial: str,
        session_id: str,
        items: list[str],
        items_blob: bytes,
        credentials_blob: bytes | None,
        now: float,
    ) -> int: ...
    def get_inventory(self, inventory_id: int) -> InventoryRecord | None: ...
    def latest_inventory(self, contract_id: str) -> InventoryRecord | None: ...
    def purge_inventory(self, *, terminated_before: float, now: float, actor: str) -> list[str]:
        """Delete the inventory of contracts terminated before the cut-off (第32条4, 第38条)."""
        ...

    # small settings shared by the broker process and the CLI (e.g. the public URL)
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...
