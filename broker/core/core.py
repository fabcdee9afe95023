"""The session core: events and the time in, commands out (mitmproxy's events/commands, aioquic's timer).

:meth:`SessionCore.handle` takes one event and ``now`` and answers with the commands to run;
:meth:`SessionCore.next_timer` says when it wants :meth:`SessionCore.handle_timer` called (code expiry,
consent deadlines, grace periods, held-back refusal audits). It never reads a clock, never touches a
socket or the store: the host (:mod:`broker.session_host`) reads facts before an event and runs the
commands after. Phases and "who may send what" come from the one table in :mod:`protocol.session`.

Seed rules enforced here: only the subscriber's own agent asks (第31条①), with a 6-digit code read out on
the phone; service hours (別記1); suspended or terminated contracts (第18条, 第20条/第21条) and excessive
requests (第18条⑤) are refused, and every refusal is audited; consent per scope, default deny, timeout =
deny (第31条1項④, 別紙5); the subscriber may end or withdraw at any time.
"""

from __future__ import annotations

import heapq
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from protocol import encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import ConsentRequest, Error, Message, Queue, QueueEntry
from protocol.session import Phase, Trigger, transition

from ..errors import BrokerError, RefusedError
from ..policy import AuditThrottle
from . import agent_side, colleagues, operator_side
from .commands import Audit, Command, PersistSessionEnd, SendToAgent, SendToOperator, VoidCode
from .events import (
    AgentDisconnected,
    AgentError,
    AgentFrame,
    AgentMessage,
    ClusterQueue,
    CodeClaimed,
    ConsentDecided,
    CredentialsRead,
    Event,
    FrameDelivered,
    InventoryStored,
    OperatorAttached,
    OperatorDetached,
    OperatorMessage,
    PersonAsked,
    SessionAdopted,
    Shutdown,
    SupportRequested,
)
from .state import (
    DENIED,
    GRANTED,
    REQUESTED,
    TIMEOUT,
    WITHDRAWN,
    AgentPeer,
    OperatorPeer,
    PendingConsent,
    Session,
    SessionRules,
)

__all__ = ["MAX_QUEUE", "CodeGuardLike", "ServiceHoursLike", "SessionCore"]

MAX_QUEUE = 10_000
"""Entries in one ``queue`` message (the protocol's bound): the whole cluster's waiting requests,
oldest first."""


class ServiceHoursLike(Protocol):
    def is_open(self, now: float) -> bool: ...
    def next_opening(self, now: float) -> float: ...


class CodeGuardLike(Protocol):
    def check(self, operator: str, address: str, now: float) -> None: ...
    def failure(self, operator: str, address: str, now: float) -> None: ...
    def success(self, operator: str, address: str) -> None: ...


class SessionCore:
    """Every live support session of this broker, and the operators who may see them."""

    def __init__(
        self,
        *,
        hours: ServiceHoursLike,
        code_guard: CodeGuardLike,
        rules: SessionRules | None = None,
        # A letter first: ids are typed into command lines, and "-x…" would read as an option.
        new_id: Callable[[], str] = lambda: "s" + secrets.token_urlsafe(12),
        new_code: Callable[[], str] = lambda: f"{secrets.randbelow(1_000_000):06d}",
    ) -> None:
        self.hours = hours
        self.code_guard = code_guard
        self.rules = rules or SessionRules()
        self.new_id = new_id
        self.new_code = new_code
        self.sessions: dict[str, Session] = {}
        self.by_code: dict[str, Session] = {}
        self.operators: set[OperatorPeer] = set()
        self.remote_queue: tuple[QueueEntry, ...] = ()
        """Waiting requests held by other processes of the cluster (the host reads them from the
        shared database on a ``SessionRequested`` signal: :class:`ClusterQueue`)."""
        self.accepted_requests: dict[str, deque[float]] = {}
        """Per contract: when this core accepted support requests in the last hour (第18条⑤)."""
        self._ids = 0
        self._request_refusals = AuditThrottle(self.rules.request_refusal_audit_interval)
        self._out: list[Command] = []
        self._timers: list[tuple[float, str]] = []
        self._deadline: dict[str, float] = {}
        self._touched: set[str] = set()
        self.agent_refusals = agent_side.AgentRefusals(self.rules)

    # -- the API ----------------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply one event; the commands the host must run, in order."""
        try:
            self._dispatch(event, now)
        finally:
            self._rearm()
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next (None: nothing to wait for)."""
        while self._timers:
            when, session_id = self._timers[0]
            if self._deadline.get(session_id) == when:
                return when
            heapq.heappop(self._timers)  # stale: that session's deadline moved or it ended
        return None

    def handle_timer(self, now: float) -> list[Command]:
        """Expire codes, time out consent, end sessions whose side stayed away, flush held audits."""
        try:
            while (when := self.next_timer()) is not None and when <= now:
                _, session_id = heapq.heappop(self._timers)
                self._deadline.pop(session_id, None)
                session = self.sessions.get(session_id)
                if session is not None:
                    self._expire(session, now)
                    self._touched.add(session_id)
        finally:
            self._rearm()
        out, self._out = self._out, []
        return out

    def queue(self, request_id: str | None = None) -> Queue:
        waiting = sorted(
            (s for s in self.sessions.values() if s.phase is Phase.WAITING), key=lambda s: s.created_at
        )
        local = [
            QueueEntry(
                session_id=s.id,
                contract_id=s.contract_id,
                machine_name=s.machine_name,
                created_at=s.created_at,
                expires_at=s.code_expires_at,
            )
            for s in waiting
        ]
        remote = [e for e in self.remote_queue if e.session_id not in self.sessions]
        entries = sorted(local + remote, key=lambda e: e.created_at) if remote else local
        return Queue(id=request_id, requests=tuple(entries[:MAX_QUEUE]))

    # -- dispatch ---------------------------------------------------------------------------------

    def _dispatch(self, event: Event, now: float) -> None:
        if isinstance(event, AgentFrame):
            agent_side.frame(self, event, now)
        elif isinstance(event, FrameDelivered):
            agent_side.delivered(self, event)
        elif isinstance(event, OperatorMessage):
            self._guarded_operator(event.operator, event.message, now)
        elif isinstance(event, SessionAdopted):
            agent_side.adopt(self, event, now)
        elif isinstance(event, ClusterQueue):
            if event.entries != self.remote_queue:
                self.remote_queue = event.entries
                self.broadcast_queue()
        elif isinstance(event, CodeClaimed):
            claimed = event
            self._guarded(
                claimed.operator, claimed.message.id, lambda: operator_side.code_claimed(self, claimed, now)
            )
        elif isinstance(event, SupportRequested):
            agent_side.support_request(self, event, now)
        elif isinstance(event, AgentMessage | ConsentDecided):
            message = event.message
            try:
                if isinstance(event, ConsentDecided):
                    agent_side.consent_decision(self, event, now)
                else:
                    agent_side.message(self, event.agent, message, now)
            except (BrokerError, ProtocolError) as exc:
                self.send_agent(
                    event.agent,
                    Error(id=getattr(message, "id", None), code=exc.code.value, message=exc.message),
                )
        elif isinstance(event, AgentError):
            self.agent_refusals.handle(self, event, now)
        elif isinstance(event, AgentDisconnected):
            agent_side.disconnected(self, event.agent, now)
        elif isinstance(event, OperatorAttached):
            self.operators.add(event.operator)
        elif isinstance(event, OperatorDetached):
            operator_side.detached(self, event.operator, now)
        elif isinstance(event, PersonAsked):
            self._guarded(event.operator, event.message.id, lambda: colleagues.ask(self, event, now))
        elif isinstance(event, InventoryStored):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session.inventory_id = event.inventory_id
        elif isinstance(event, CredentialsRead):
            self._guarded(event.operator, event.request_id, lambda: operator_side.reveal(self, event, now))
        elif isinstance(event, Shutdown):
            for session in list(self.sessions.values()):
                if event.handoff and session.claimed_at is not None and session.phase is not Phase.ENDED:
                    operator_side.flush_refusals(self, session, now)
                    self.audit("session.handoff", session.id, now, contract=session.contract_id)
                    del self.sessions[session.id]
                    self._deadline.pop(session.id, None)
                else:
                    self.end(session, by="broker", reason="broker shutting down", now=now)

    def _guarded_operator(self, op: OperatorPeer, msg: Message, now: float) -> None:
        self._guarded(op, getattr(msg, "id", None), lambda: operator_side.message(self, op, msg, now))

    def _guarded(self, op: OperatorPeer, request_id: str | None, run: Callable[[], None]) -> None:
        """Run one operator action; a refusal becomes an ``error`` reply with its stable code."""
        try:
            run()
        except (BrokerError, ProtocolError) as exc:
            self.send_operator(
                op,
                Error(
                    id=request_id,
                    code=exc.code.value,
                    message=exc.message,
                    retry_after=getattr(exc, "retry_after", None),
                ),
            )

    # -- helpers for the rule modules --------------------------------------------------------------

    def next_request_id(self) -> str:
        self._ids += 1
        return f"b{self._ids}"

    def audit(self, action: str, subject: str, now: float, actor: str = "broker", **details: Any) -> None:
        self._out.append(Audit(action=action, subject=subject, actor=actor, details=details, at=now))

    def emit(self, command: Command) -> None:
        self._out.append(command)

    def touch(self, session: Session) -> None:
        """The session's deadlines may have changed: re-arm its timer after this event."""
        self._touched.add(session.id)

    def send_agent(self, agent: AgentPeer, message: Message) -> None:
        session = agent.session
        if session is not None and session.agent is agent:
            session.bytes_to_agent += len(encode(message))
        self._out.append(SendToAgent(agent=agent, message=message))

    def send_operator(self, op: OperatorPeer, message: Message) -> None:
        self._out.append(SendToOperator(operator=op, message=message))

    def to_viewers(self, session: Session, message: Message) -> None:
        for viewer in sorted(session.viewers, key=_order):
            self.send_operator(viewer, message)

    def broadcast_state(self, session: Session) -> None:
        state = session.state()
        if session.agent is not None:
            self.send_agent(session.agent, state)
        self.to_viewers(session, state)
        self.touch(session)

    def broadcast_queue(self) -> None:
        queue = self.queue()
        for op in sorted(self.operators, key=_order):
            if op.name is not None and not op.must_change_password:
                self.send_operator(op, queue)

    def find(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RefusedError("no such session", code=ErrorCode.NOT_FOUND)
        return session

    def ask_consent(
        self, session: Session, scopes: Iterable[str], now: float, request_id: str | None = None
    ) -> None:
        asked = tuple(dict.fromkeys(scopes))
        for scope in asked:
            if session.scopes.get(scope) != GRANTED:
                session.scopes[scope] = REQUESTED
        deadline = now + self.rules.consent_timeout + self.rules.consent_slack
        if request_id is None:
            request_id = self.next_request_id()
            # Kept so that a process adopting the session can put the same question back (§6a).
            self.audit(
                "consent.ask",
                session.id,
                now,
                request=request_id,
                scopes=list(asked),
                deadline=deadline,
                timeout=self.rules.consent_timeout,
            )
        elif session.pending is not None and session.pending.request_id == request_id:
            deadline = session.pending.deadline  # asked again (a resume): the same deadline
        session.pending = PendingConsent(request_id=request_id, scopes=asked, deadline=deadline)
        self.touch(session)
        if session.agent is not None:
            self.send_agent(
                session.agent,
                ConsentRequest(
                    id=request_id,
                    session_id=session.id,
                    operator=session.operator_display or session.operator,
                    scopes=asked,
                    timeout=self.rules.consent_timeout,
                ),
            )

    def end(self, session: Session, *, by: str, reason: str, now: float) -> None:
        if session.phase is Phase.ENDED:
            return
        trigger = Trigger.EXPIRE if reason == "code_expired" else Trigger.END
        session.phase = transition(session.phase, trigger)
        session.ended_by = by
        session.end_reason = reason
        if session.code is not None:
            self.by_code.pop(session.code, None)
            session.code = None
            if session.shared_code:
                self.emit(VoidCode(session_id=session.id, contract_id=session.contract_id, at=now))
        for scope, status in session.scopes.items():
            if status in (GRANTED, REQUESTED):
                session.scopes[scope] = WITHDRAWN if status == GRANTED else DENIED
        session.granted = frozenset()
        session.pending = None
        operator_side.flush_refusals(self, session, now)
        self.broadcast_state(session)  # the last state counts too
        started = session.claimed_at or session.created_at
        self.emit(
            PersistSessionEnd(
                session_id=session.id,
                claimed=session.claimed_at is not None,
                by=by,
                reason=reason,
                bytes_to_agent=session.bytes_to_agent,
                bytes_to_operator=session.bytes_to_operator,
                details={
                    "contract": session.contract_id,
                    "serial": session.serial,
                    "operator": session.operator,
                    "requested_at": session.created_at,
                    "started_at": session.claimed_at,
                    "ended_at": now,
                    "duration": round(now - started, 3),
                    "ended_by": by,
                    "reason": reason,
                    "scopes": sorted(session.ever_granted),
                    "bytes_to_operator": session.bytes_to_operator,
                    "bytes_to_agent": session.bytes_to_agent,
                    "updates": session.updates,
                    "inputs": session.inputs,
                    "refused_inputs": session.refused_inputs,
                },
                at=now,
            )
        )
        if session.agent is not None and session.agent.session is session:
            session.agent.session = None
        del self.sessions[session.id]
        self.broadcast_queue()

    # -- timers -----------------------------------------------------------------------------------

    def _rearm(self) -> None:
        for session_id in self._touched:
            session = self.sessions.get(session_id)
            when = session.deadline(self.rules) if session is not None else None
            if when is None:
                self._deadline.pop(session_id, None)
            elif self._deadline.get(session_id) != when:
                self._deadline[session_id] = when
                heapq.heappush(self._timers, (when, session_id))
        self._touched.clear()

    def _expire(self, session: Session, now: float) -> None:
        rules = self.rules
        if session.phase is Phase.WAITING and now >= session.code_expires_at:
            self.end(session, by="broker", reason="code_expired", now=now)
            return
        away = session.agent_away_since
        if away is not None and now >= max(away + rules.grace, session.restart_until or 0.0):
            # (an announced restart keeps the session until restart_until, issue 16)
            self.end(session, by="broker", reason="agent_lost", now=now)
            return
        if (
            session.operator_away_since is not None
            and session.phase in (Phase.CONSENT, Phase.ACTIVE)
            and now - session.operator_away_since >= rules.grace
        ):
            self.end(session, by="broker", reason="operator_lost", now=now)
            return
        if session.unaudited_refusals and now >= session.last_refusal_audit + rules.refusal_audit_interval:
            operator_side.flush_refusals(self, session, now)
        pending = session.pending
        if pending is not None and now >= pending.deadline:
            if pending.person is not None:
                colleagues.timed_out(self, session, now)
                return
            # No signed answer came: the broker applies the default, deny (第31条1項④).
            for scope in pending.scopes:
                if session.scopes.get(scope) == REQUESTED:
                    session.scopes[scope] = TIMEOUT
            session.pending = None
            if session.phase is Phase.CONSENT:
                session.phase = transition(session.phase, Trigger.DECISION)
            self.audit(
                "consent.timeout", session.id, now, contract=session.contract_id, scopes=list(pending.scopes)
            )
            self.broadcast_state(session)


def _order(op: OperatorPeer) -> tuple[str, int]:
    """A stable order for sends to a set of connections (tests and recordings see the same sequence)."""
    return (op.name or "", id(op))
