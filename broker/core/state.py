"""What the session core remembers: rules, the connections it knows, sessions and open questions.

Plain data, no I/O. A connection record (:class:`AgentPeer`, :class:`OperatorPeer`) carries the
host's handle in ``peer``; the core never calls it, it only names the record in a command
(:mod:`broker.core.commands`) and the host delivers through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from protocol.messages import InventoryView, Message, MonitorLayout, SessionState, Viewer
from protocol.scopes import DENIED, GRANTED, REQUESTED, TIMEOUT, WITHDRAWN, ScopeStatus
from protocol.session import Phase

if TYPE_CHECKING:
    from broker.relay import ScreenPush

# Scope statuses come from the status table in protocol.scopes (re-exported for the rule modules).
__all__ = [
    "DENIED",
    "GRANTED",
    "REQUESTED",
    "TIMEOUT",
    "WITHDRAWN",
    "AgentPeer",
    "OperatorPeer",
    "Peer",
    "PendingConsent",
    "PersonRequest",
    "Session",
    "SessionRules",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRules:
    """Timing and limits of sessions; defaults from DESIGN §5 and the issue."""

    code_ttl: float = 600.0
    """A support code is valid 10 minutes and single use."""
    consent_timeout: float = 60.0
    """What the agent is told; no answer in time is deny."""
    consent_slack: float = 15.0
    """Extra wait before the broker itself treats a silent agent as a deny."""
    grace: float = 30.0
    """A disconnected side may come back within this long before the session ends."""
    restart_grace: float = 600.0
    """How long the agent of a session may stay away after it announced a restart of the PC
    (``restart_notice``, issue 16): a reboot, the login and the subscriber's "続けますか？"."""
    max_requests_per_hour: int = 5
    """第18条⑤: more support requests than this per subscriber per hour are refused."""
    refusal_audit_interval: float = 5.0
    """Refused input is audited at most this often per session (with a count), so a flood
    of refused mouse moves cannot flood the audit log; what is held back is written by a timer."""
    request_refusal_audit_interval: float = 60.0
    """Refused support requests are audited at most this often per agent and reason (with a
    count): one agent sending 10,000 requests writes a handful of rows, not 10,000 (第18条⑤)."""
    operator_notice_interval: float = 1.0
    """Seconds between two notices to a session's operator that the agent refused input."""


class Peer(Protocol):
    """The host's handle of a connection (``broker.peers.SenderPeer``); the core never calls it."""

    def send(self, message: Message) -> None: ...
    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush: ...


@dataclass(eq=False, slots=True)
class AgentPeer:
    peer: Peer
    serial: str
    contract_id: str
    machine_name: str = ""
    session: Session | None = None
    """The session this connection carries (one at a time), so a screen update finds it at once."""


@dataclass(eq=False, slots=True)
class OperatorPeer:
    peer: Peer
    address: str
    name: str | None = None
    display_name: str = ""
    role: str = ""
    token: str | None = None
    must_change_password: bool = False
    expires_at: float | None = None
    """When the login token expires; the server ends the connection then (issue 11)."""

    @property
    def supervisor(self) -> bool:
        return self.role in ("supervisor", "admin")


@dataclass(frozen=True, slots=True)
class PersonRequest:
    """An open question about one person: invite a colleague, or hand the session over (issue 13)."""

    kind: Literal["invite", "transfer"]
    colleague: str
    colleague_display: str
    by: str
    by_display: str


@dataclass(eq=False, slots=True)
class PendingConsent:
    request_id: str
    scopes: tuple[str, ...]
    deadline: float
    person: PersonRequest | None = None
    """Set when the question is about a new person (an invite or a transfer)."""


@dataclass(eq=False, slots=True)
class Session:
    id: str
    contract_id: str
    serial: str
    machine_name: str
    created_at: float
    code: str | None
    code_expires_at: float
    agent: AgentPeer | None
    phase: Phase = Phase.WAITING
    operator: str = ""
    operator_display: str = ""
    viewers: set[OperatorPeer] = field(default_factory=set)
    scopes: dict[str, ScopeStatus] = field(default_factory=dict)
    granted: frozenset[str] = frozenset()
    ever_granted: set[str] = field(default_factory=set)
    pending: PendingConsent | None = None
    claimed_at: float | None = None
    agent_away_since: float | None = None
    restart_until: float | None = None
    """Set by the agent's ``restart_notice``: the agent may stay away until then (issue 16)."""
    operator_away_since: float | None = None
    layout: MonitorLayout | None = None
    inventory: InventoryView | None = None
    inventory_id: int | None = None
    refresh_requested: bool = False
    bytes_to_operator: int = 0
    """Screen bytes handed to viewers' connections (a frame dropped for a slow viewer is not counted)."""
    bytes_to_agent: int = 0
    """Encoded control and input messages sent to the agent within the session."""
    updates: int = 0
    inputs: int = 0
    refused_inputs: int = 0
    refused_updates: int = 0
    last_refusal_audit: float = float("-inf")
    unaudited_refusals: int = 0
    refusal_actor: str = "broker"
    refusal_code: str = ""
    ended_by: str | None = None
    end_reason: str = ""
    allowed_viewers: set[str] = field(default_factory=set)
    """Colleagues (operator accounts) the subscriber allowed by name to see the screen."""
    shared_code: bool = False
    """The code is a row of the shared database (docs/cluster.md §2): voided there if the request
    ends unclaimed, claimed there (not in :attr:`SessionCore.by_code`)."""

    def viewer_list(self) -> tuple[Viewer, ...]:
        """Everyone who can see the screen now: the session's operator first, then every read-only
        viewer (supervisors and anyone else), each person once (DESIGN §2: no silent watcher)."""
        seen: dict[str, Viewer] = {}
        for op in sorted(self.viewers, key=lambda v: (v.name != self.operator, v.name or "")):
            key = op.name or ""
            if key in seen:
                continue
            owner = op.name == self.operator
            colleague = op.name in self.allowed_viewers
            seen[key] = Viewer(
                name=(op.display_name or op.name or "?")[:255],
                role="operator" if owner or colleague else "supervisor",
                read_only=not owner,
                account=(op.name or "")[:64] if colleague and not owner else "",
            )
        return tuple(seen.values())[:16]

    def state(self) -> SessionState:
        return SessionState(
            session_id=self.id,
            phase=self.phase.value,
            contract_id=self.contract_id,
            machine_name=self.machine_name,
            operator=self.operator_display,
            scopes=dict(self.scopes),
            ended_by=self.ended_by,
            reason=self.end_reason,
            viewers=self.viewer_list(),
            restart_until=self.restart_until,
        )

    def deadline(self, rules: SessionRules) -> float | None:
        """The earliest moment this session needs the core's timer, or None."""
        times: list[float] = []
        if self.phase is Phase.WAITING:
            times.append(self.code_expires_at)
        if self.agent_away_since is not None:
            times.append(max(self.agent_away_since + rules.grace, self.restart_until or 0.0))
        if self.operator_away_since is not None and self.phase in (Phase.CONSENT, Phase.ACTIVE):
            times.append(self.operator_away_since + rules.grace)
        if self.pending is not None:
            times.append(self.pending.deadline)
        if self.unaudited_refusals:
            times.append(self.last_refusal_audit + rules.refusal_audit_interval)
        return min(times) if times else None
