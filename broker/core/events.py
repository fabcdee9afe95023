"""Events: what happened, as the host saw it, with every fact the rules need already read.

The host reads what needs the store or a CPU-heavy check (the subscriber's status, the requests of
the last hour, a consent receipt's signature, an inventory record) *before* it builds the event,
off the event loop; the core only decides. One frozen class per kind of event.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import (
    Claim,
    ConsentDecision,
    Error,
    Invite,
    Message,
    QueueEntry,
    ScopeStatus,
    SupportRequest,
    Transfer,
)
from protocol.receipts import ConsentReceipt

from .state import AgentPeer, OperatorPeer

__all__ = [
    "AgentDisconnected",
    "AgentError",
    "AgentFrame",
    "AgentMessage",
    "ClusterQueue",
    "CodeClaimed",
    "ConsentDecided",
    "CredentialsRead",
    "Event",
    "FrameDelivered",
    "InventoryStored",
    "OpenQuestion",
    "OperatorAttached",
    "OperatorDetached",
    "OperatorMessage",
    "PersonAsked",
    "SessionAdopted",
    "SharedRequest",
    "Shutdown",
    "Subscriber",
    "SupportRequested",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """The contract as the store had it when the request came (第18条, 第20条/第21条)."""

    status: str
    """``active``, ``suspended`` or ``terminated`` (``broker.store.SubscriberStatus`` values)."""
    suspended_until: float | None = None


ACTIVE = Subscriber(status="active")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedRequest:
    """What the shared database said about a support request (docs/cluster.md §2, step 4), read by
    the host before the event: the 第18条⑤ window (``SharedLimits.hit("request:<contract>", 5, 3600)``)
    and, when it counted, the code ``SupportCodes.issue`` took for ``session_id`` (single use across
    every process). The core uses these instead of its own count and code."""

    limit_wait: float | None
    """None: the request was counted; else the seconds until one more fits (refused)."""
    session_id: str | None = None
    code: str | None = None
    """The issued code (None when the limit refused: nothing was issued)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupportRequested:
    """A ``support_request`` without ``resume``; the host read the contract and the count first."""

    agent: AgentPeer
    message: SupportRequest
    subscriber: Subscriber | None
    """None: no such contract (treated as terminated)."""
    recent_requests: int
    """``support.request`` audit entries of this contract in the last hour (第18条⑤)."""
    counted_at: float | None = None
    """When ``recent_requests`` was read (after the host's writer was flushed): requests this core
    accepted from then on are not in it yet and are added by the core. None: the count is complete."""
    shared: SharedRequest | None = None
    """The shared database's answer (limit and code); the broker always reads it. None only where no
    store answers (the pure-core tests): then the core counts and draws the code itself."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentMessage:
    """Any other control message of an agent (``resume``, chat, end, restart notice, layout, inventory)."""

    agent: AgentPeer
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentDecided:
    """A ``consent_decision`` whose receipt the host checked against the agent's certificate."""

    agent: AgentPeer
    message: ConsentDecision
    receipt: ConsentReceipt | None
    """The verified receipt, or None when verification failed (see ``refusal``)."""
    refusal: Error | None = None
    """Why the receipt was not accepted (unknown certificate, bad signature)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentError:
    """An ``error`` message of an agent (it may report input it refused)."""

    agent: AgentPeer
    message: Error


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFrame:
    """A binary frame of an agent (a screen update)."""

    agent: AgentPeer
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameDelivered:
    """What the host's forwarding of one :class:`~broker.core.commands.ForwardFrame` achieved."""

    session_id: str
    delivered_bytes: int
    """Bytes handed to viewer connections (frames dropped for a slow viewer not counted)."""
    behind: bool
    """A viewer fell behind: the core asks the agent for a keyframe (once until one comes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDisconnected:
    agent: AgentPeer


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAttached:
    """A logged-in operator connection (it now sees the queue)."""

    operator: OperatorPeer


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorDetached:
    operator: OperatorPeer


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorMessage:
    """A message of a logged-in operator (login and password are the server's)."""

    operator: OperatorPeer
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeClaimed:
    """A ``claim`` by code; the host claimed the code in the shared database first
    (``SupportCodes.claim``: single use cluster-wide, code-guess lockouts and rate limits shared)."""

    operator: OperatorPeer
    message: Claim
    session_id: str | None
    """The session the code belonged to (None: refused, see ``refusal``)."""
    node: str | None = None
    """The process that holds that session's agent."""
    refusal: Error | None = None
    """``code_invalid`` / ``account_locked`` / ``rate_limited`` with ``retry_after``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionAdopted:
    """An agent resumes a session this process does not hold (its process died, or a rolling restart
    moved it): the host read the session row, its receipts and the operator from the database."""

    agent: AgentPeer
    message: SupportRequest
    contract_id: str
    operator: str
    operator_display: str
    started_at: float
    scopes: tuple[tuple[str, ScopeStatus], ...]
    """Each scope's status after the receipts in order (granted, denied, timeout, withdrawn)."""
    granted: tuple[str, ...]
    """What the last receipt granted: the broker's second line; the agent's own record decides."""
    decided: bool
    """Whether any receipt exists (else the session is still waiting for the first answer)."""
    question: OpenQuestion | None = None
    """The scope question the dead process had asked and no receipt answered yet (its
    ``consent.ask`` audit entry): asked again with the same id, scopes and deadline."""
    subscriber: Subscriber | None = ACTIVE
    """The contract read with the row: a suspended or terminated one is not resumed (第18条)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenQuestion:
    """A consent question still open when its process died (``consent.ask`` without an answer)."""

    request_id: str
    scopes: tuple[str, ...]
    deadline: float
    """The broker's deadline as first asked (never moved on: the subscriber's window was that one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterQueue:
    """The waiting requests of the whole cluster, read from the shared database (live, unclaimed
    support codes) after a ``SessionRequested`` signal; the core shows those it does not hold itself."""

    entries: tuple[QueueEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonAsked:
    """An ``invite`` or ``transfer``; the host looked the colleague's account up first."""

    operator: OperatorPeer
    message: Invite | Transfer
    known: bool
    """Whether an operator account of that name exists."""
    display_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryStored:
    """The host stored (encrypted) the inventory a :class:`~broker.core.commands.SaveInventory` asked for."""

    session_id: str
    inventory_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialsRead:
    """Answer to :class:`~broker.core.commands.ReadCredentials`: the decrypted router login or None."""

    operator: OperatorPeer
    request_id: str
    session_id: str
    account: str | None
    password: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    """The broker stops: every session ends — or, in a cluster (``handoff``), only those not claimed
    yet: a claimed session stays open in the database and its agent resumes it on another process
    (a rolling restart ends no session, docs/cluster.md)."""

    handoff: bool = False


Event = (
    SupportRequested
    | AgentMessage
    | ConsentDecided
    | AgentError
    | AgentFrame
    | FrameDelivered
    | AgentDisconnected
    | OperatorAttached
    | OperatorDetached
    | OperatorMessage
    | CodeClaimed
    | ClusterQueue
    | SessionAdopted
    | PersonAsked
    | InventoryStored
    | CredentialsRead
    | Shutdown
)
