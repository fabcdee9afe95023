"""The agent's side of a session: support requests and resume, consent decisions, inventory,
chat/end/restart/layout, screen frames, disconnect. Functions over :class:`broker.core.SessionCore`."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Chat,
    Error,
    InventoryReport,
    InventoryView,
    Message,
    MonitorLayout,
    RestartNotice,
    ScreenRefresh,
    SessionEnd,
    SupportCodeIssued,
    SupportRequest,
)
from protocol.screen import FLAG_KEYFRAME, FrameKind, peek_header
from protocol.session import ConsentRequired, Phase, Role, Trigger, check_sender, inventory_scope, transition

from ..errors import BrokerError, RefusedError
from ..input_refusals import AgentRefusals
from . import colleagues
from .commands import ForwardFrame, PersistReceipt, RequestKeyframe, SaveInventory, VoidCode
from .events import AgentFrame, ConsentDecided, FrameDelivered, SessionAdopted, Subscriber, SupportRequested
from .state import DENIED, GRANTED, REQUESTED, TIMEOUT, WITHDRAWN, AgentPeer, PendingConsent, Session

if TYPE_CHECKING:
    from .core import SessionCore

__all__ = [
    "AgentRefusals",
    "consent_decision",
    "contract_refusal",
    "delivered",
    "disconnected",
    "frame",
    "may_request",
    "message",
    "support_request",
]


def support_request(core: SessionCore, event: SupportRequested, now: float) -> None:
    agent, msg = event.agent, event.message
    if msg.resume is not None:  # the host read the contract with it: a cut contract does not resume
        _resume(core, agent, msg, now, refusal=contract_refusal(event.subscriber, now))
        return
    shared = event.shared
    try:
        _check_may_request(core, event, now)
    except RefusedError as exc:
        if shared is not None and shared.session_id is not None and shared.code is not None:
            # issued, yet refused after all (the service hours closed in between): void it
            core.emit(VoidCode(session_id=shared.session_id, contract_id=agent.contract_id, at=now))
        count = core._request_refusals.note(f"{agent.serial}|{exc.code.value}", now)
        if count is not None:
            core.audit(
                "support.refused",
                agent.contract_id,
                now,
                code=exc.code.value,
                serial=agent.serial,
                count=count,
            )
        core.send_agent(
            agent, Error(id=msg.id, code=exc.code.value, message=exc.message, retry_after=exc.retry_after)
        )
        return
    for session in list(core.sessions.values()):  # end() removes from the dict
        if session.serial == agent.serial and session.phase is not Phase.ENDED:
            core.end(session, by="broker", reason="replaced by a new request", now=now)
    shared_code = shared is not None and shared.session_id is not None and shared.code is not None
    if shared is not None and shared.session_id is not None and shared.code is not None:
        session_id, code = shared.session_id, shared.code  # single use on every process
    else:
        session_id, code = core.new_id(), core.new_code()
        while code in core.by_code:
            code = core.new_code()
    session = Session(
        id=session_id,
        contract_id=agent.contract_id,
        serial=agent.serial,
        machine_name=agent.machine_name,
        created_at=now,
        code=code,
        code_expires_at=now + core.rules.code_ttl,
        agent=agent,
        shared_code=shared_code,
    )
    core.sessions[session.id] = session
    if not shared_code:
        core.by_code[code] = session
    core.accepted_requests.setdefault(agent.contract_id, deque()).append(now)
    agent.session = session
    core.touch(session)
    core.audit("support.request", agent.contract_id, now, session=session.id, serial=agent.serial)
    core.send_agent(
        agent,
        SupportCodeIssued(id=msg.id, session_id=session.id, code=code, expires_at=session.code_expires_at),
    )
    core.broadcast_queue()


def may_request(core: SessionCore, subscriber: Subscriber | None, now: float) -> RefusedError | None:
    """The refusal a request of this subscriber gets now before any count (terminated, suspended,
    closed), or None. The host asks before it counts the request in the shared window and takes a
    code (a refused request uses neither); the core checks again on the event."""
    try:
        _check_status(core, subscriber, now)
    except RefusedError as exc:
        return exc
    return None


def _check_may_request(core: SessionCore, event: SupportRequested, now: float) -> None:
    _check_status(core, event.subscriber, now)
    _check_limit(core, event, now)


def contract_refusal(subscriber: Subscriber | None, now: float) -> RefusedError | None:
    """Why this contract may not have a session now (terminated, suspended: 第18条, 第20条/第21条),
    or None. Service hours are not asked: a session under way when they close goes on."""
    try:
        _check_contract(subscriber, now)
    except RefusedError as exc:
        return exc
    return None


def _check_status(core: SessionCore, subscriber: Subscriber | None, now: float) -> None:
    _check_contract(subscriber, now)
    if not core.hours.is_open(now):
        raise RefusedError(
            "outside service hours (別記1)",
            code=ErrorCode.SERVICE_CLOSED,
            retry_after=max(0.0, core.hours.next_opening(now) - now),
        )


def _check_contract(subscriber: Subscriber | None, now: float) -> None:
    if subscriber is None or subscriber.status == "terminated":
        raise RefusedError("the contract is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED)
    if subscriber.status == "suspended" and (
        subscriber.suspended_until is None or now < subscriber.suspended_until
    ):
        until = subscriber.suspended_until
        raise RefusedError(
            "the service is suspended (第18条)",
            code=ErrorCode.SUBSCRIBER_SUSPENDED,
            retry_after=None if until is None else until - now,
        )


def _check_limit(core: SessionCore, event: SupportRequested, now: float) -> None:
    limit = core.rules.max_requests_per_hour
    if event.shared is not None:
        if event.shared.limit_wait is not None:  # the shared window (every process) is full
            raise RefusedError(
                f"more than {limit} support requests in an hour (第18条⑤)",
                code=ErrorCode.RATE_LIMITED,
                retry_after=event.shared.limit_wait,
            )
        return
    if event.recent_requests + _accepted_since(core, event.agent.contract_id, event, now) >= limit:
        raise RefusedError(
            f"more than {limit} support requests in an hour (第18条⑤)",
            code=ErrorCode.RATE_LIMITED,
            retry_after=3600.0,
        )


def _accepted_since(core: SessionCore, contract_id: str, event: SupportRequested, now: float) -> int:
    """Requests of this contract the core accepted that the host's count cannot include yet (their
    audit entries were still on the way to the store when it read): a flood of requests is not let
    through while the writer catches up."""
    accepted = core.accepted_requests.get(contract_id)
    if accepted is None:
        return 0
    while accepted and accepted[0] <= now - 3600:
        accepted.popleft()
    if not accepted:
        del core.accepted_requests[contract_id]
        return 0
    if event.counted_at is None:
        return 0
    return sum(1 for at in accepted if at >= event.counted_at)


def _resume(
    core: SessionCore, agent: AgentPeer, msg: SupportRequest, now: float, refusal: RefusedError | None = None
) -> None:
    session = core.sessions.get(msg.resume or "")
    if session is None or session.serial != agent.serial or session.phase is Phase.ENDED:
        core.send_agent(
            agent, Error(id=msg.id, code=ErrorCode.NOT_FOUND.value, message="no such session to resume")
        )
        return
    session.agent = agent
    agent.session = session
    session.agent_away_since = None
    if refusal is not None:
        # The contract was suspended or terminated while the agent was away (the cut closed its
        # connection): the session ends now instead of going on, and the agent is told why.
        core.send_agent(
            agent,
            Error(
                id=msg.id, code=refusal.code.value, message=refusal.message, retry_after=refusal.retry_after
            ),
        )
        core.end(session, by="broker", reason=refusal.code.value, now=now)
        return
    after_restart = session.restart_until is not None
    if after_restart:
        # Second line behind the agent (which withdraws before it restarts): nothing granted
        # before a restart of the PC carries over; the operator asks again (issue 16).
        _withdraw_all(session)
    session.restart_until = None  # back: the normal grace applies again
    core.audit(
        "session.agent_back", session.id, now, contract=session.contract_id, after_restart=after_restart
    )
    if session.phase is Phase.WAITING and session.code is not None:
        core.send_agent(
            agent,
            SupportCodeIssued(
                id=msg.id, session_id=session.id, code=session.code, expires_at=session.code_expires_at
            ),
        )
    core.broadcast_state(session)
    if session.pending is not None and session.pending.person is not None:
        colleagues.resend(core, session)
    elif session.pending is not None:
        core.ask_consent(session, session.pending.scopes, now, request_id=session.pending.request_id)


def _withdraw_all(session: Session) -> None:
    """Nothing granted before a restart of the PC carries over it (issue 16, 第31条1項④)."""
    for scope in session.granted:
        session.scopes[scope] = WITHDRAWN
    session.granted = frozenset()


def adopt(core: SessionCore, event: SessionAdopted, now: float) -> None:
    """Take over a live session from the database (docs/cluster.md §7 step 10): the operator is away
    until their process re-links (the grace applies), the scopes are those of the last receipt,
    and the agent, the authority, sends nothing its own consent record does not allow."""
    agent, msg = event.agent, event.message
    session_id = msg.resume or ""
    if session_id in core.sessions:
        _resume(core, agent, msg, now)
        return
    session = Session(
        id=session_id,
        contract_id=event.contract_id,
        serial=agent.serial,
        machine_name=agent.machine_name,
        created_at=event.started_at,
        code=None,
        code_expires_at=event.started_at,
        agent=None,
        phase=Phase.ACTIVE if event.decided else Phase.CONSENT,
        operator=event.operator,
        operator_display=event.operator_display,
        scopes=dict(event.scopes),
        granted=frozenset(event.granted),
        ever_granted=set(event.granted),
        claimed_at=event.started_at,
        operator_away_since=now,
    )
    question = event.question
    if question is not None:
        # The open question goes on (the agent still shows it: same id, so not asked twice); its
        # answer, a signed receipt about this session and operator, is what it always was.
        for scope in question.scopes:
            if session.scopes.get(scope) != GRANTED:
                session.scopes[scope] = REQUESTED
        session.pending = PendingConsent(
            request_id=question.request_id, scopes=question.scopes, deadline=question.deadline
        )
    core.sessions[session.id] = session
    core.audit(
        "session.adopted",
        session.id,
        now,
        contract=session.contract_id,
        serial=agent.serial,
        operator=session.operator,
        granted=sorted(session.granted),
        asking=list(question.scopes) if question is not None else [],
    )
    _resume(core, agent, msg, now, refusal=contract_refusal(event.subscriber, now))


def agent_session(agent: AgentPeer, session_id: str, core: SessionCore) -> Session:
    session = core.sessions.get(session_id)
    if session is None or session.agent is not agent:
        raise RefusedError("no such session on this connection", code=ErrorCode.NOT_FOUND)
    return session


def message(core: SessionCore, agent: AgentPeer, msg: Message, now: float) -> None:
    """Every control message of an agent after hello but consent decisions and errors."""
    if isinstance(msg, SupportRequest):  # a resume (new requests come as SupportRequested)
        _resume(core, agent, msg, now)
    elif isinstance(msg, Chat):
        session = agent_session(agent, msg.session_id, core)
        check_sender(Role.AGENT, "chat", session.phase, session.granted)
        core.to_viewers(session, Chat(session_id=session.id, text=msg.text, sender="subscriber", time=now))
    elif isinstance(msg, SessionEnd):
        session = agent_session(agent, msg.session_id, core)
        core.end(session, by="subscriber", reason=msg.reason or "ended by the subscriber", now=now)
    elif isinstance(msg, InventoryReport):
        _inventory_report(core, agent, msg, now)
    elif isinstance(msg, RestartNotice):
        session = agent_session(agent, msg.session_id, core)
        check_sender(Role.AGENT, "restart_notice", session.phase, session.granted)
        session.restart_until = now + core.rules.restart_grace
        # The agent withdraws everything right after this notice (its signed receipt follows):
        # the state broadcast now already says so, so it never contradicts the agent's record.
        _withdraw_all(session)
        core.audit("session.restart", session.id, now, contract=session.contract_id)
        core.broadcast_state(session)
    elif isinstance(msg, MonitorLayout):
        session = agent_session(agent, msg.session_id, core)
        check_sender(Role.AGENT, "monitor_layout", session.phase, session.granted)
        session.layout = msg
        core.to_viewers(session, msg)
    else:
        raise RefusedError(f"{type(msg).__name__} not expected", code=ErrorCode.UNEXPECTED_MESSAGE)


def _inventory_report(core: SessionCore, agent: AgentPeer, msg: InventoryReport, now: float) -> None:
    """Store and show only what the subscriber granted, item by item (別紙5)."""
    session = agent_session(agent, msg.session_id, core)
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
        core.audit("inventory.refused", session.id, now, contract=session.contract_id, scopes=missing)
        raise ConsentRequired(f"not granted by the subscriber: {', '.join(missing)}")
    core.emit(
        SaveInventory(
            session_id=session.id, contract_id=session.contract_id, serial=agent.serial, report=msg, at=now
        )
    )
    session.inventory = InventoryView(
        session_id=session.id, items=msg.items, has_router_credentials=has_credentials
    )
    core.to_viewers(session, session.inventory)


def frame(core: SessionCore, event: AgentFrame, now: float) -> None:
    """A screen update: relayed only in an active session with ``screen:view`` granted."""
    agent, data = event.agent, event.data
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
                core.audit(
                    "screen.refused", session.id, now, code=exc.code.value, contract=session.contract_id
                )
        core.send_agent(agent, Error(code=exc.code.value, message=exc.message))
        return
    keyframe = bool(header.flags & FLAG_KEYFRAME)
    if keyframe:
        session.refresh_requested = False
    session.updates += 1
    # per-viewer delivery: nobody the subscriber did not allow
    viewers = tuple(v for v in session.viewers if colleagues.may_see(session, v))
    if viewers:
        core.emit(ForwardFrame(session_id=session.id, data=data, keyframe=keyframe, viewers=viewers))


def delivered(core: SessionCore, event: FrameDelivered) -> None:
    session = core.sessions.get(event.session_id)
    if session is None:
        return
    session.bytes_to_operator += event.delivered_bytes
    if event.behind and not session.refresh_requested and session.agent is not None:
        session.refresh_requested = True
        request_keyframe(core, session, behind=True)


def request_keyframe(core: SessionCore, session: Session, *, behind: bool = False) -> None:
    """Ask the agent for a keyframe (a viewer fell behind, or a new viewer joined a running stream)."""
    if session.agent is None:
        return
    refresh = ScreenRefresh(session_id=session.id, behind=behind)
    from protocol import encode

    session.bytes_to_agent += len(encode(refresh))
    core.emit(RequestKeyframe(agent=session.agent, message=refresh))


def consent_decision(core: SessionCore, event: ConsentDecided, now: float) -> None:
    agent, msg = event.agent, event.message
    session = agent_session(agent, msg.session_id, core)
    check_sender(Role.AGENT, "consent_decision", session.phase, session.granted)
    receipt = event.receipt
    if receipt is None:
        refusal = event.refusal
        code = ErrorCode(refusal.code) if refusal is not None else ErrorCode.INVALID_FIELD
        raise RefusedError(
            refusal.message if refusal is not None else "the receipt did not verify", code=code
        )
    if receipt.session_id != session.id or receipt.serial != agent.serial:
        raise RefusedError("the receipt is for another session or certificate", code=ErrorCode.INVALID_FIELD)
    persist = PersistReceipt(
        session_id=session.id,
        contract_id=session.contract_id,
        serial=agent.serial,
        decision=receipt.decision,
        granted=tuple(receipt.granted),
        denied=tuple(receipt.denied),
        receipt=msg.receipt,
        signature=msg.signature,
        viewer=receipt.viewer,
        at=now,
    )
    if receipt.viewer is not None:
        core.emit(persist)
        colleagues.decided(core, session, receipt, now)
        return
    pending = session.pending
    denied_status = TIMEOUT if receipt.decision == "timeout" else DENIED
    for scope in receipt.asked:
        session.scopes[scope] = GRANTED if scope in receipt.granted else denied_status
    for scope in session.granted - set(receipt.granted):
        session.scopes[scope] = WITHDRAWN
    for scope in receipt.granted:
        session.scopes[scope] = GRANTED
    session.granted = frozenset(receipt.granted)
    session.ever_granted |= set(receipt.granted)
    if pending is not None and (
        receipt.decision in ("answered", "timeout") or set(pending.scopes) <= set(receipt.asked)
    ):
        session.pending = None
    core.emit(persist)
    if session.phase is Phase.CONSENT:
        session.phase = transition(session.phase, Trigger.DECISION)
    if receipt.decision == "ended":
        core.end(session, by="subscriber", reason="ended by the subscriber", now=now)
        return
    core.broadcast_state(session)
    # No screen_refresh here: on a grant of screen:view the agent starts sharing by itself with a
    # keyframe (docs/session-core.md, "keyframes"); a second keyframe would only cost bandwidth.


def disconnected(core: SessionCore, agent: AgentPeer, now: float) -> None:
    session = agent.session
    if session is not None and session.agent is agent:
        agent.session = None
        session.agent = None
        session.agent_away_since = now
        core.audit("session.agent_lost", session.id, now, contract=session.contract_id)
        core.broadcast_state(session)
