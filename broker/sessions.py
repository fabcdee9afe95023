"""Support sessions in the broker: queue, support codes, consent, relay routing, end and summary.

The manager is synchronous and never awaits a socket: it is called by the server adapter with
one received message and the current time, and answers by queueing frames on peers (each peer's
:class:`broker.relay.Sender` drains them) and by writing audit entries. So one slow peer cannot
stall another, and the whole flow is testable with a fake clock. Phases and the scope each
message needs come from :mod:`protocol.session` (one table).

Seed rules enforced here: only the subscriber's own agent asks (第31条①), with a 6-digit code
read out on the phone; service hours (別記1); suspended or terminated contracts (第18条,
第20条/第21条) and excessive requests (第18条⑤) are refused, and every refusal is audited;
consent per scope, default deny, timeout = deny (第31条1項④, 別紙5); the subscriber may end or
withdraw at any time.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    AuditEntries,
    AuditQuery,
    AuditRow,
    AuditVerified,
    AuditVerify,
    Chat,
    Claim,
    Claimed,
    ConsentDecision,
    ConsentRequest,
    Error,
    InputEvent,
    InventoryReport,
    InventoryView,
    Invite,
    Message,
    MonitorLayout,
    Queue,
    QueueEntry,
    QueueList,
    RestartNotice,
    RestartRequest,
    RevealCredentials,
    ScopeRequest,
    ScreenRefresh,
    SessionEnd,
    SessionList,
    Sessions,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Transfer,
    Viewer,
    Watch,
)
from protocol.messages import Credentials as CredentialsMessage
from protocol.receipts import ConsentReceipt
from protocol.screen import FLAG_KEYFRAME, FrameKind, peek_header
from protocol.session import (
    ConsentRequired,
    NotAllowed,
    Phase,
    Role,
    Trigger,
    check_sender,
    inventory_scope,
    transition,
)

from . import colleagues
from .audit import ChainReport
from .errors import BrokerError, RefusedError
from .inventory import InventoryVault
from .policy import AuditThrottle
from .receipts import verify_receipt
from .relay import ScreenPush
from .store import Store, SubscriberStatus

log = logging.getLogger("broker.sessions")


MAX_SHOWN_PROBLEMS = 100
"""Audit problems sent to the console in one ``audit_verified`` (the CLI prints them all)."""


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
    of refused mouse moves cannot flood the audit log."""
    request_refusal_audit_interval: float = 60.0
    """Refused support requests are audited at most this often per agent and reason (with a
    count): one agent sending 10,000 requests writes a handful of rows, not 10,000 (第18条⑤)."""


class Peer(Protocol):
    """What the manager needs from a connection (implemented by the server's adapter)."""

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


@dataclass(eq=False, slots=True)
class PendingConsent:
    request_id: str
    scopes: tuple[str, ...]
    deadline: float
    person: colleagues.PersonRequest | None = None
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
    scopes: dict[str, str] = field(default_factory=dict)
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
    bytes_to_agent: int = 0
    updates: int = 0
    inputs: int = 0
    refused_inputs: int = 0
    refused_updates: int = 0
    last_refusal_audit: float = float("-inf")
    unaudited_refusals: int = 0
    ended_by: str | None = None
    end_reason: str = ""
    allowed_viewers: set[str] = field(default_factory=set)
    """Colleagues (operator accounts) the subscriber allowed by name to see the screen."""

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
            scopes=dict(self.scopes),  # type: ignore[arg-type]
            ended_by=self.ended_by,
            reason=self.end_reason,
            viewers=self.viewer_list(),
            restart_until=self.restart_until,
        )


class ServiceHoursLike(Protocol):
    def is_open(self, now: float) -> bool: ...
    def next_opening(self, now: float) -> float: ...


class CodeGuardLike(Protocol):
    def check(self, operator: str, address: str, now: float) -> None: ...
    def failure(self, operator: str, address: str, now: float) -> None: ...
    def success(self, operator: str, address: str) -> None: ...


class SessionManager:
    def __init__(
        self,
        store: Store,
        *,
        vault: InventoryVault,
        hours: ServiceHoursLike,
        code_guard: CodeGuardLike,
        rules: SessionRules | None = None,
        # A letter first: ids are typed into command lines, and "-x…" would read as an option.
        new_id: Callable[[], str] = lambda: "s" + secrets.token_urlsafe(12),
        new_code: Callable[[], str] = lambda: f"{secrets.randbelow(1_000_000):06d}",
        verify_audit: Callable[[], ChainReport] | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.hours = hours
        self.code_guard = code_guard
        self.rules = rules or SessionRules()
        self.new_id = new_id
        self.new_code = new_code
        self.verify_audit = verify_audit or store.verify_audit
        """What the console's "verify" runs: the server adds the signed checkpoints."""
        self.sessions: dict[str, Session] = {}
        self.by_code: dict[str, Session] = {}
        self.operators: set[OperatorPeer] = set()
        self._ids = 0
        self._request_refusals = AuditThrottle(self.rules.request_refusal_audit_interval)

    def _next_id(self) -> str:
        self._ids += 1
        return f"b{self._ids}"

    def _audit(self, action: str, subject: str, now: float, actor: str = "broker", **details: Any) -> None:
        self.store.append_audit(actor=actor, action=action, subject=subject, details=details, now=now)

    # -- agent side -------------------------------------------------------------------------------

    def support_request(self, agent: AgentPeer, msg: SupportRequest, now: float) -> None:
        if msg.resume is not None:
            self._resume(agent, msg, now)
            return
        try:
            self._check_may_request(agent, now)
        except RefusedError as exc:
            retry = exc.retry_after
            count = self._request_refusals.note(f"{agent.serial}|{exc.code.value}", now)
            if count is not None:
                self._audit(
                    "support.refused",
                    agent.contract_id,
                    now,
                    code=exc.code.value,
                    serial=agent.serial,
                    count=count,
                )
            agent.peer.send(Error(id=msg.id, code=exc.code.value, message=exc.message, retry_after=retry))
            return
        for session in list(self.sessions.values()):  # _end removes from the dict
            if session.serial == agent.serial and session.phase is not Phase.ENDED:
                self._end(session, by="broker", reason="replaced by a new request", now=now)
        code = self.new_code()
        while code in self.by_code:
            code = self.new_code()
        session = Session(
            id=self.new_id(),
            contract_id=agent.contract_id,
            serial=agent.serial,
            machine_name=agent.machine_name,
            created_at=now,
            code=code,
            code_expires_at=now + self.rules.code_ttl,
            agent=agent,
        )
        self.sessions[session.id] = session
        self.by_code[code] = session
        agent.session = session
        self._audit("support.request", agent.contract_id, now, session=session.id, serial=agent.serial)
        agent.peer.send(
            SupportCodeIssued(id=msg.id, session_id=session.id, code=code, expires_at=session.code_expires_at)
        )
        self._broadcast_queue()

    def _check_may_request(self, agent: AgentPeer, now: float) -> None:
        subscriber = self.store.get_subscriber(agent.contract_id)
        if subscriber is None or subscriber.status is SubscriberStatus.TERMINATED:
            raise RefusedError("the contract is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED)
        if subscriber.status is SubscriberStatus.SUSPENDED and (
            subscriber.suspended_until is None or now < subscriber.suspended_until
        ):
            until = subscriber.suspended_until
            raise RefusedError(
                "the service is suspended (第18条)",
                code=ErrorCode.SUBSCRIBER_SUSPENDED,
                retry_after=None if until is None else until - now,
            )
        if not self.hours.is_open(now):
            raise RefusedError(
                "outside service hours (別記1)",
                code=ErrorCode.SERVICE_CLOSED,
                retry_after=max(0.0, self.hours.next_opening(now) - now),
            )
        recent = self.store.count_audit(action="support.request", subject=agent.contract_id, since=now - 3600)
        if recent >= self.rules.max_requests_per_hour:
            raise RefusedError(
                f"more than {self.rules.max_requests_per_hour} support requests in an hour (第18条⑤)",
                code=ErrorCode.RATE_LIMITED,
                retry_after=3600.0,
            )

    def _resume(self, agent: AgentPeer, msg: SupportRequest, now: float) -> None:
        session = self.sessions.get(msg.resume or "")
        if session is None or session.serial != agent.serial or session.phase is Phase.ENDED:
            agent.peer.send(
                Error(id=msg.id, code=ErrorCode.NOT_FOUND.value, message="no such session to resume")
            )
            return
        session.agent = agent
        agent.session = session
        session.agent_away_since = None
        after_restart = session.restart_until is not None
        if after_restart:
            # Second line behind the agent (which withdraws before it restarts): nothing granted
            # before a restart of the PC carries over; the operator asks again (issue 16).
            for scope in session.granted:
                session.scopes[scope] = "withdrawn"
            session.granted = frozenset()
        session.restart_until = None  # back: the normal grace applies again
        self._audit(
            "session.agent_back", session.id, now, contract=session.contract_id, after_restart=after_restart
        )
        if session.phase is Phase.WAITING and session.code is not None:
            agent.peer.send(
                SupportCodeIssued(
                    id=msg.id, session_id=session.id, code=session.code, expires_at=session.code_expires_at
                )
            )
        self._broadcast_state(session)
        if session.pending is not None and session.pending.person is not None:
            colleagues.resend(self, session)
        elif session.pending is not None:
            self._ask_consent(session, session.pending.scopes, now, request_id=session.pending.request_id)

    def _agent_session(self, agent: AgentPeer, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.agent is not agent:
            raise RefusedError("no such session on this connection", code=ErrorCode.NOT_FOUND)
        return session

    def agent_message(self, agent: AgentPeer, msg: Message, now: float) -> None:
        """Every control message from an agent after hello (except support_request)."""
        try:
            if isinstance(msg, ConsentDecision):
                self._consent_decision(agent, msg, now)
            elif isinstance(msg, Chat):
                session = self._agent_session(agent, msg.session_id)
                check_sender(Role.AGENT, "chat", session.phase, session.granted)
                out = Chat(session_id=session.id, text=msg.text, sender="subscriber", time=now)
                self._to_viewers(session, out)
            elif isinstance(msg, SessionEnd):
                session = self._agent_session(agent, msg.session_id)
                self._end(session, by="subscriber", reason=msg.reason or "ended by the subscriber", now=now)
            elif isinstance(msg, InventoryReport):
                self._inventory_report(agent, msg, now)
            elif isinstance(msg, RestartNotice):
                session = self._agent_session(agent, msg.session_id)
                check_sender(Role.AGENT, "restart_notice", session.phase, session.granted)
                session.restart_until = now + self.rules.restart_grace
                self._audit("session.restart", session.id, now, contract=session.contract_id)
                self._broadcast_state(session)
            elif isinstance(msg, MonitorLayout):
                session = self._agent_session(agent, msg.session_id)
                check_sender(Role.AGENT, "monitor_layout", session.phase, session.granted)
                session.layout = msg
                self._to_viewers(session, msg)
            else:
                agent.peer.send(
                    Error(
                        code=ErrorCode.UNEXPECTED_MESSAGE.value, message=f"{type(msg).__name__} not expected"
                    )
                )
        except (BrokerError, ProtocolError) as exc:
            agent.peer.send(Error(id=getattr(msg, "id", None), code=exc.code.value, message=exc.message))

    def _inventory_report(self, agent: AgentPeer, msg: InventoryReport, now: float) -> None:
        """Store and show only what the subscriber granted, item by item (別紙5)."""
        session = self._agent_session(agent, msg.session_id)
        check_sender(Role.AGENT, "inventory_report", session.phase, session.granted)
        items = [item.item for item in msg.items]
        if len(set(items)) != len(items):
            raise RefusedError("an item appears twice in the report", code=ErrorCode.INVALID_FIELD)
        has_credentials = msg.router_account is not None or msg.router_password is not None
        wanted = {inventory_scope(item) for item in items} | (
            {inventory_scope("router")} if has_credentials else set()
        )
        missing = sorted(wanted - session.granted)
        if missing:
            self._audit("inventory.refused", session.id, now, contract=session.contract_id, scopes=missing)
            raise ConsentRequired(f"not granted by the subscriber: {', '.join(missing)}")
        session.inventory_id = self.vault.save(
            contract_id=session.contract_id, serial=agent.serial, report=msg, now=now
        )
        session.inventory = InventoryView(
            session_id=session.id,
            items=msg.items,
            has_router_credentials=has_credentials,
        )
        self._to_viewers(session, session.inventory)

    def agent_binary(self, agent: AgentPeer, data: bytes, now: float) -> None:
        """A screen update: relayed only in an active session with ``screen:view`` granted."""
        session = agent.session
        try:
            header = peek_header(data)
            if header.kind is not FrameKind.SCREEN_UPDATE:
                raise RefusedError("unsupported binary frame", code=ErrorCode.MALFORMED)
            if session is None:
                raise RefusedError("no session", code=ErrorCode.NOT_FOUND)
            check_sender(Role.AGENT, "screen_update", session.phase, session.granted)
        except (BrokerError, ProtocolError) as exc:
            if session is not None:
                session.refused_updates += 1
                if session.refused_updates == 1:
                    self._audit(
                        "screen.refused", session.id, now, code=exc.code.value, contract=session.contract_id
                    )
            agent.peer.send(Error(code=exc.code.value, message=exc.message))
            return
        keyframe = bool(header.flags & FLAG_KEYFRAME)
        if keyframe:
            session.refresh_requested = False
        session.updates += 1
        for viewer in list(session.viewers):
            if not colleagues.may_see(session, viewer):
                continue  # per-viewer delivery: nobody the subscriber did not allow
            result = viewer.peer.send_screen(data, keyframe=keyframe)
            if result is not ScreenPush.DROPPED:
                session.bytes_to_operator += len(data)
            if result is ScreenPush.BEHIND and not session.refresh_requested:
                session.refresh_requested = True
                agent.peer.send(ScreenRefresh(session_id=session.id, behind=True))

    def _consent_decision(self, agent: AgentPeer, msg: ConsentDecision, now: float) -> None:
        session = self._agent_session(agent, msg.session_id)
        check_sender(Role.AGENT, "consent_decision", session.phase, session.granted)
        receipt = self._verified_receipt(agent, session, msg)
        if receipt.viewer is not None:
            self._audit_receipt(agent, session, receipt, msg, now)
            colleagues.decided(self, session, receipt, now)
            return
        pending = session.pending
        denied_status = "timeout" if receipt.decision == "timeout" else "denied"
        for scope in receipt.asked:
            session.scopes[scope] = "granted" if scope in receipt.granted else denied_status
        for scope in session.granted - set(receipt.granted):
            session.scopes[scope] = "withdrawn"
        for scope in receipt.granted:
            session.scopes[scope] = "granted"
        session.granted = frozenset(receipt.granted)
        session.ever_granted |= set(receipt.granted)
        if pending is not None and (
            receipt.decision in ("answered", "timeout") or set(pending.scopes) <= set(receipt.asked)
        ):
            session.pending = None
        self._audit_receipt(agent, session, receipt, msg, now)
        if session.phase is Phase.CONSENT:
            session.phase = transition(session.phase, Trigger.DECISION)
        if receipt.decision == "ended":
            self._end(session, by="subscriber", reason="ended by the subscriber", now=now)
            return
        self._broadcast_state(session)
        if "screen:view" in session.granted and session.viewers:
            agent.peer.send(ScreenRefresh(session_id=session.id))

    def _audit_receipt(
        self, agent: AgentPeer, session: Session, receipt: ConsentReceipt, msg: ConsentDecision, now: float
    ) -> None:
        """The signed receipt, kept whole in the audit log (a person decision also names its viewer)."""
        person = {} if receipt.viewer is None else {"viewer": receipt.viewer}
        self._audit(
            "consent.receipt",
            session.id,
            now,
            actor=f"agent:{agent.serial}",
            contract=session.contract_id,
            serial=agent.serial,
            decision=receipt.decision,
            **person,
            granted=list(receipt.granted),
            denied=list(receipt.denied),
            receipt=msg.receipt,
            signature=msg.signature,
        )

    def _verified_receipt(self, agent: AgentPeer, session: Session, msg: ConsentDecision) -> ConsentReceipt:
        record = self.store.get_certificate(agent.serial)
        if record is None:
            raise RefusedError("unknown certificate", code=ErrorCode.CERT_UNKNOWN)
        receipt = verify_receipt(msg.receipt, msg.signature, record.cert_pem)
        if receipt.session_id != session.id or receipt.serial != agent.serial:
            raise RefusedError(
                "the receipt is for another session or certificate", code=ErrorCode.INVALID_FIELD
            )
        return receipt

    def agent_disconnected(self, agent: AgentPeer, now: float) -> None:
        session = agent.session
        if session is not None and session.agent is agent:
            agent.session = None
            session.agent = None
            session.agent_away_since = now
            self._audit("session.agent_lost", session.id, now, contract=session.contract_id)
            self._broadcast_state(session)

    # -- operator side ----------------------------------------------------------------------------

    def operator_attached(self, op: OperatorPeer) -> None:
        self.operators.add(op)

    def operator_detached(self, op: OperatorPeer, now: float) -> None:
        self.operators.discard(op)
        for session in list(self.sessions.values()):
            if op in session.viewers:
                before = session.viewer_list()
                session.viewers.discard(op)
                if op.name == session.operator and not any(
                    v.name == session.operator for v in session.viewers
                ):
                    session.operator_away_since = now
                if session.viewer_list() != before:
                    # The subscriber and every viewer learn at once who no longer watches.
                    self._broadcast_state(session)

    def queue(self, request_id: str | None = None) -> Queue:
        waiting = sorted(
            (s for s in self.sessions.values() if s.phase is Phase.WAITING), key=lambda s: s.created_at
        )
        return Queue(
            id=request_id,
            requests=tuple(
                QueueEntry(
                    session_id=s.id,
                    contract_id=s.contract_id,
                    machine_name=s.machine_name,
                    created_at=s.created_at,
                    expires_at=s.code_expires_at,
                )
                for s in waiting
            ),
        )

    def _broadcast_queue(self) -> None:
        queue = self.queue()
        for op in list(self.operators):
            if op.name is not None and not op.must_change_password:
                op.peer.send(queue)

    def operator_message(self, op: OperatorPeer, msg: Message, now: float) -> None:
        """Messages of a logged-in operator (the server handles login/auth before this)."""
        request_id = getattr(msg, "id", None)
        try:
            if isinstance(msg, QueueList):
                op.peer.send(self.queue(msg.id))
            elif isinstance(msg, Claim):
                self._claim(op, msg, now)
            elif isinstance(msg, Watch):
                self._watch(op, msg, now)
            elif isinstance(msg, SessionList):
                self._require_supervisor(op)
                states = tuple(s.state() for s in self.sessions.values() if s.phase is not Phase.ENDED)
                op.peer.send(Sessions(id=msg.id, sessions=states))
            elif isinstance(msg, ScopeRequest):
                session = self._sent(op, "scope_request", msg.session_id, now)
                if session.pending is not None:
                    raise RefusedError("the subscriber is still answering", code=ErrorCode.INVALID_STATE)
                self._ask_consent(session, msg.scopes, now)
                self._broadcast_state(session)
            elif isinstance(msg, InputEvent):
                self._input(op, msg, now)
            elif isinstance(msg, ScreenRefresh):
                # With a monitor it switches what the PC shares: the session's operator only; a
                # viewer may only ask for a keyframe.
                kind = "screen_refresh" if msg.monitor is None else "monitor_switch"
                session = self._sent(op, kind, msg.session_id, now)
                if session.agent is not None:
                    session.agent.peer.send(ScreenRefresh(session_id=session.id, monitor=msg.monitor))
            elif isinstance(msg, Chat):
                session = self._sent(op, "chat", msg.session_id, now)
                out = Chat(session_id=session.id, text=msg.text, sender=op.display_name, time=now)
                if session.agent is not None:
                    session.agent.peer.send(out)
                self._to_viewers(session, out)
            elif isinstance(msg, SessionEnd):
                session = self._sent(op, "session_end", msg.session_id, now)
                self._end(session, by="operator", reason=msg.reason or f"ended by {op.name}", now=now)
            elif isinstance(msg, RevealCredentials):
                self._reveal(op, msg, now)
            elif isinstance(msg, Invite | Transfer):
                colleagues.ask(self, op, msg, now)
            elif isinstance(msg, RestartRequest):
                # Only with system:restart granted (the one table); the agent checks again.
                session = self._sent(op, "restart_request", msg.session_id, now)
                if session.agent is None:
                    raise RefusedError(
                        "the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND
                    )
                self._audit("restart.request", session.id, now, actor=f"operator:{op.name}")
                session.agent.peer.send(RestartRequest(id=msg.id, session_id=session.id))
            elif isinstance(msg, AuditQuery):
                self._require_supervisor(op)
                entries = self.store.audit_page(
                    subject=msg.subject, limit=msg.limit, before_seq=msg.before_seq
                )
                rows = tuple(
                    AuditRow(
                        seq=e.seq,
                        at=e.at,
                        actor=e.actor,
                        action=e.action,
                        subject=e.subject,
                        details=e.details,
                    )
                    for e in entries
                )
                op.peer.send(AuditEntries(id=msg.id, entries=rows))
            elif isinstance(msg, AuditVerify):
                self._require_supervisor(op)
                report = self.verify_audit()
                problems = report.problems[:MAX_SHOWN_PROBLEMS]
                more = len(report.problems) - len(problems) + report.omitted
                if more:  # one message must stay within the text frame limit
                    problems = [*problems, f"… and {more} more: run python -m broker audit verify"]
                op.peer.send(
                    AuditVerified(id=msg.id, ok=report.ok, checked=report.checked, problems=tuple(problems))
                )
            else:
                raise RefusedError(
                    f"{type(msg).__name__} is not for operators", code=ErrorCode.UNEXPECTED_MESSAGE
                )
        except (BrokerError, ProtocolError) as exc:
            op.peer.send(
                Error(
                    id=request_id,
                    code=exc.code.value,
                    message=exc.message,
                    retry_after=getattr(exc, "retry_after", None),
                )
            )

    def _require_supervisor(self, op: OperatorPeer) -> None:
        if not op.supervisor:
            raise RefusedError("supervisors only", code=ErrorCode.NOT_ALLOWED)

    def _find(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RefusedError("no such session", code=ErrorCode.NOT_FOUND)
        return session

    def role(self, op: OperatorPeer, session: Session) -> Role:
        """The operator's place in this session: its operator, or a read-only viewer."""
        return Role.OPERATOR if op.name is not None and op.name == session.operator else Role.VIEWER

    def _sent(self, op: OperatorPeer, kind: str, session_id: str, now: float) -> Session:
        """The session an operator message is for, after the one permission table
        (protocol.session SENDERS/REQUIREMENTS) allowed this operator's role to send it now."""
        session = self._viewed(op, session_id)
        self._check_sender(op, session, kind, now)
        return session

    def _check_sender(self, op: OperatorPeer, session: Session, kind: str, now: float) -> None:
        """:func:`check_sender`; a viewer's refused attempt is audited (once a minute per viewer
        and kind, with a count): a supervisor who tries to type is something to know."""
        role = self.role(op, session)
        try:
            check_sender(role, kind, session.phase, session.granted)
        except NotAllowed as exc:
            count = self._request_refusals.note(f"{session.id}|{op.name}|{kind}", now)
            if count is not None:
                self._audit(
                    "viewer.refused",
                    session.id,
                    now,
                    actor=f"operator:{op.name}",
                    contract=session.contract_id,
                    kind=kind,
                    code=exc.code.value,
                    count=count,
                )
            raise

    def _viewed(self, op: OperatorPeer, session_id: str) -> Session:
        session = self._find(session_id)
        if session.operator != op.name and not op.supervisor:
            if op.name in session.allowed_viewers:
                return session  # a colleague the subscriber allowed by name: read-only
            raise RefusedError("this session belongs to another operator", code=ErrorCode.NOT_ALLOWED)
        return session

    def _claim(self, op: OperatorPeer, msg: Claim, now: float) -> None:
        assert op.name is not None
        if msg.code is not None:
            self.code_guard.check(op.name, op.address, now)
            session = self.by_code.get(msg.code)
            if session is None or session.phase is not Phase.WAITING or now >= session.code_expires_at:
                self.code_guard.failure(op.name, op.address, now)
                self._audit("claim.failed", op.name, now, actor=f"operator:{op.name}", address=op.address)
                raise RefusedError("no waiting request has this code", code=ErrorCode.CODE_INVALID)
            self.code_guard.success(op.name, op.address)
        elif msg.session_id is not None:
            session = self._find(msg.session_id)
            if session.phase is not Phase.WAITING:
                raise RefusedError("this request was already taken", code=ErrorCode.NOT_ALLOWED)
        else:
            raise RefusedError("claim needs a code or a session id", code=ErrorCode.INVALID_FIELD)
        if session.agent is None:
            raise RefusedError("the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND)
        session.phase = transition(session.phase, Trigger.CLAIM)
        if session.code is not None:
            self.by_code.pop(session.code, None)
            session.code = None  # single use
        session.operator = op.name
        session.operator_display = op.display_name
        session.claimed_at = now
        session.viewers.add(op)
        self._audit(
            "session.claim",
            session.id,
            now,
            actor=f"operator:{op.name}",
            contract=session.contract_id,
            serial=session.serial,
            scopes=list(msg.scopes),
            by_code=msg.code is not None,
        )
        op.peer.send(
            Claimed(
                id=msg.id,
                session_id=session.id,
                contract_id=session.contract_id,
                machine_name=session.machine_name,
            )
        )
        self._ask_consent(session, msg.scopes, now)
        self._broadcast_queue()
        self._broadcast_state(session)

    def _ask_consent(
        self, session: Session, scopes: Iterable[str], now: float, request_id: str | None = None
    ) -> None:
        asked = tuple(dict.fromkeys(scopes))
        for scope in asked:
            if session.scopes.get(scope) != "granted":
                session.scopes[scope] = "requested"
        request_id = request_id or self._next_id()
        session.pending = PendingConsent(
            request_id=request_id,
            scopes=asked,
            deadline=now + self.rules.consent_timeout + self.rules.consent_slack,
        )
        if session.agent is not None:
            session.agent.peer.send(
                ConsentRequest(
                    id=request_id,
                    session_id=session.id,
                    operator=session.operator_display or session.operator,
                    scopes=asked,
                    timeout=self.rules.consent_timeout,
                )
            )

    def _reveal(self, op: OperatorPeer, msg: RevealCredentials, now: float) -> None:
        """別紙5 (11): the router login, shown only to the session's operator, only on request, audited."""
        session = self._sent(op, "reveal_credentials", msg.session_id, now)
        record = self.store.get_inventory(session.inventory_id) if session.inventory_id is not None else None
        credentials = self.vault.credentials(record) if record is not None else None
        if credentials is None:
            raise RefusedError("the subscriber entered no router login", code=ErrorCode.NOT_FOUND)
        self._audit(
            "inventory.reveal",
            session.id,
            now,
            actor=f"operator:{op.name}",
            contract=session.contract_id,
            inventory=session.inventory_id,
        )
        op.peer.send(
            CredentialsMessage(
                id=msg.id, session_id=session.id, account=credentials.account, password=credentials.password
            )
        )

    def _watch(self, op: OperatorPeer, msg: Watch, now: float) -> None:
        session = self._sent(op, "watch", msg.session_id, now)
        before = session.viewer_list()
        session.viewers.add(op)
        if op.name == session.operator:
            session.operator_away_since = None
        else:
            self._audit(
                "session.supervise" if op.name not in session.allowed_viewers else "session.colleague_join",
                session.id,
                now,
                actor=f"operator:{op.name}",
                contract=session.contract_id,
                viewers=[v.name for v in session.viewer_list()],
            )
        if session.viewer_list() != before:
            # A new person sees the screen: the subscriber and every viewer are told (issue 11).
            self._broadcast_state(session)
        else:
            op.peer.send(session.state())
        if session.layout is not None:
            op.peer.send(session.layout)
        if session.inventory is not None and (op.name == session.operator or op.supervisor):
            op.peer.send(session.inventory)  # 別紙5 data: not for an invited colleague
        if session.agent is not None and "screen:view" in session.granted:
            session.agent.peer.send(ScreenRefresh(session_id=session.id))

    def _input(self, op: OperatorPeer, msg: InputEvent, now: float) -> None:
        session = self._viewed(op, msg.session_id)
        role = self.role(op, session)
        if role is not Role.OPERATOR:
            self._check_sender(op, session, "input", now)  # raises not_allowed, audited
        try:
            check_sender(role, "input", session.phase, session.granted)
        except ProtocolError as exc:
            session.refused_inputs += 1
            session.unaudited_refusals += 1
            if now - session.last_refusal_audit >= self.rules.refusal_audit_interval:
                self._audit(
                    "input.refused",
                    session.id,
                    now,
                    actor=f"operator:{op.name}",
                    contract=session.contract_id,
                    code=exc.code.value,
                    count=session.unaudited_refusals,
                )
                session.last_refusal_audit = now
                session.unaudited_refusals = 0
            raise
        if session.agent is None:
            raise RefusedError("the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND)
        session.inputs += 1
        session.agent.peer.send(msg)

    # -- common -----------------------------------------------------------------------------------

    def _to_viewers(self, session: Session, msg: Message) -> None:
        for viewer in list(session.viewers):
            viewer.peer.send(msg)

    def _broadcast_state(self, session: Session) -> None:
        state = session.state()
        if session.agent is not None:
            session.agent.peer.send(state)
        self._to_viewers(session, state)

    def _end(self, session: Session, *, by: str, reason: str, now: float) -> None:
        if session.phase is Phase.ENDED:
            return
        trigger = Trigger.EXPIRE if reason == "code_expired" else Trigger.END
        session.phase = transition(session.phase, trigger)
        session.ended_by = by
        session.end_reason = reason
        if session.code is not None:
            self.by_code.pop(session.code, None)
            session.code = None
        for scope, status in session.scopes.items():
            if status in ("granted", "requested"):
                session.scopes[scope] = "withdrawn" if status == "granted" else "denied"
        session.granted = frozenset()
        session.pending = None
        started = session.claimed_at or session.created_at
        self._audit(
            "session.end",
            session.id,
            now,
            contract=session.contract_id,
            serial=session.serial,
            operator=session.operator,
            requested_at=session.created_at,
            started_at=session.claimed_at,
            ended_at=now,
            duration=round(now - started, 3),
            ended_by=by,
            reason=reason,
            scopes=sorted(session.ever_granted),
            bytes_to_operator=session.bytes_to_operator,
            bytes_to_agent=session.bytes_to_agent,
            updates=session.updates,
            inputs=session.inputs,
            refused_inputs=session.refused_inputs,
        )
        self._broadcast_state(session)
        if session.agent is not None and session.agent.session is session:
            session.agent.session = None
        del self.sessions[session.id]
        self._broadcast_queue()

    def tick(self, now: float) -> None:
        """Expire codes, time out consent, end sessions whose side stayed away (call ~1/s)."""
        for session in list(self.sessions.values()):
            if session.phase is Phase.WAITING and now >= session.code_expires_at:
                self._end(session, by="broker", reason="code_expired", now=now)
                continue
            away = session.agent_away_since
            if away is not None and now >= max(away + self.rules.grace, session.restart_until or 0.0):
                # (an announced restart keeps the session until restart_until, issue 16)
                self._end(session, by="broker", reason="agent_lost", now=now)
                continue
            if (
                session.operator_away_since is not None
                and session.phase in (Phase.CONSENT, Phase.ACTIVE)
                and now - session.operator_away_since >= self.rules.grace
            ):
                self._end(session, by="broker", reason="operator_lost", now=now)
                continue
            pending = session.pending
            if pending is not None and pending.person is not None and now >= pending.deadline:
                colleagues.timed_out(self, session, now)
                continue
            if pending is not None and now >= pending.deadline:
                # No signed answer came: the broker applies the default, deny (第31条1項④).
                for scope in pending.scopes:
                    if session.scopes.get(scope) == "requested":
                        session.scopes[scope] = "timeout"
                session.pending = None
                if session.phase is Phase.CONSENT:
                    session.phase = transition(session.phase, Trigger.DECISION)
                self._audit(
                    "consent.timeout",
                    session.id,
                    now,
                    contract=session.contract_id,
                    scopes=list(pending.scopes),
                )
                self._broadcast_state(session)

    def close_all(self, now: float) -> None:
        for session in list(self.sessions.values()):
            self._end(session, by="broker", reason="broker shutting down", now=now)
