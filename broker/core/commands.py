"""Commands: what the core asks its host to do. Frozen; the host runs them in order.

Observers (recording, file transfer later) see every command through the host's one hook,
:attr:`broker.session_host.SessionHost.observers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.messages import AuditQuery, AuditVerify, InventoryReport, Message

from .state import AgentPeer, OperatorPeer

__all__ = [
    "Audit",
    "BrowseAudit",
    "Command",
    "ForwardFrame",
    "PersistReceipt",
    "PersistSessionEnd",
    "PersistSessionStart",
    "ReadCredentials",
    "RequestKeyframe",
    "SaveInventory",
    "SendToAgent",
    "SendToOperator",
    "VoidCode",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToAgent:
    agent: AgentPeer
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToOperator:
    """One message to one operator connection (viewers get one command each)."""

    operator: OperatorPeer
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestKeyframe:
    """A ``screen_refresh`` to the agent (also counted in ``bytes_to_agent``)."""

    agent: AgentPeer
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardFrame:
    """One screen update to each viewer allowed to see it; the host answers with
    :class:`broker.core.events.FrameDelivered`."""

    session_id: str
    data: bytes
    keyframe: bool
    viewers: tuple[OperatorPeer, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """One audit entry; the host appends them through one ordered writer (the chain keeps their order)."""

    action: str
    subject: str
    actor: str = "broker"
    details: dict[str, Any] = field(default_factory=dict)
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSessionStart:
    """The session row, when an operator claimed the request."""

    session_id: str
    contract_id: str
    serial: str
    operator: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSessionEnd:
    """The end: the session row closed and the ``session.end`` audit summary, both byte counts."""

    session_id: str
    claimed: bool
    """Whether a :class:`PersistSessionStart` was issued (else only the audit entry is written)."""
    by: str
    reason: str
    bytes_to_agent: int
    bytes_to_operator: int
    details: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistReceipt:
    """A signed consent receipt, kept whole (row + ``consent.receipt`` audit entry in one transaction)."""

    session_id: str
    contract_id: str
    serial: str
    decision: str
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    receipt: str
    signature: str
    viewer: str | None
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveInventory:
    """Encrypt and store the granted inventory; answered by :class:`broker.core.events.InventoryStored`."""

    session_id: str
    contract_id: str
    serial: str
    report: InventoryReport
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadCredentials:
    """Read and decrypt the router login of 別紙5 (11); answered by
    :class:`broker.core.events.CredentialsRead`."""

    operator: OperatorPeer
    request_id: str
    session_id: str
    inventory_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowseAudit:
    """A supervisor's audit page or verify (permission already checked); the host answers."""

    operator: OperatorPeer
    message: AuditQuery | AuditVerify


@dataclass(frozen=True, slots=True, kw_only=True)
class VoidCode:
    """A waiting request ended before a claim: its support code no longer works on any process
    (``SupportCodes.void_session``)."""

    session_id: str
    contract_id: str
    at: float


Command = (
    SendToAgent
    | SendToOperator
    | RequestKeyframe
    | ForwardFrame
    | Audit
    | PersistSessionStart
    | PersistSessionEnd
    | PersistReceipt
    | SaveInventory
    | ReadCredentials
    | BrowseAudit
    | VoidCode
)
