"""The operators' side of a session: queue, claim (by code or from the queue), watch, consent
questions, input, screen refresh and monitor switch, chat, end, restart, the router login reveal,
and supervisors' audit browsing (handed to the host). Functions over :class:`broker.core.SessionCore`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    AuditQuery,
    AuditVerify,
    Chat,
    Claim,
    Claimed,
    InputEvent,
    Invite,
    Message,
    QueueList,
    RestartRequest,
    RevealCredentials,
    ScopeRequest,
    ScreenRefresh,
    SessionEnd,
    SessionList,
    Sessions,
    Transfer,
    Watch,
)
from protocol.messages import Credentials as CredentialsMessage
from protocol.session import SCREEN, NotAllowed, Phase, Role, Trigger, check_sender, transition

from ..errors import RefusedError
from . import agent_side
from .commands import BrowseAudit, PersistSessionStart, ReadCredentials, VoidCode
from .events import CodeClaimed, CredentialsRead
from .state import OperatorPeer, Session

if TYPE_CHECKING:
    from .core import SessionCore

__all__ = ["code_claimed", "detached", "flush_refusals", "message", "reveal", "role", "sent", "viewed"]


def message(core: SessionCore, op: OperatorPeer, msg: Message, now: float) -> None:
    """Messages of a logged-in operator (the server handles login/auth before this)."""
    if isinstance(msg, QueueList):
        core.send_operator(op, core.queue(msg.id))
    elif isinstance(msg, Claim):
        _claim(core, op, msg, now)
    elif isinstance(msg, Watch):
        _watch(core, op, msg, now)
    elif isinstance(msg, SessionList):
        _require_supervisor(op)
        states = tuple(s.state() for s in core.sessions.values() if s.phase is not Phase.ENDED)
        core.send_operator(op, Sessions(id=msg.id, sessions=states))
    elif isinstance(msg, ScopeRequest):
        session = sent(core, op, "scope_request", msg.session_id, now)
        if session.pending is not None:
            raise RefusedError("the subscriber is still answering", code=ErrorCode.INVALID_STATE)
        core.ask_consent(session, msg.scopes, now)
        core.broadcast_state(session)
    elif isinstance(msg, InputEvent):
        _input(core, op, msg, now)
    elif isinstance(msg, ScreenRefresh):
        # With a monitor it switches what the PC shares: the session's operator only; a
        # viewer may only ask for a keyframe.
        kind = "screen_refresh" if msg.monitor is None else "monitor_switch"
        session = sent(core, op, kind, msg.session_id, now)
        if session.agent is not None:
            core.send_agent(session.agent, ScreenRefresh(session_id=session.id, monitor=msg.monitor))
    elif isinstance(msg, Chat):
        session = sent(core, op, "chat", msg.session_id, now)
        out = Chat(session_id=session.id, text=msg.text, sender=op.display_name, time=now)
        if session.agent is not None:
            core.send_agent(session.agent, out)
        core.to_viewers(session, out)
    elif isinstance(msg, SessionEnd):
        session = sent(core, op, "session_end", msg.session_id, now)
        core.end(session, by="operator", reason=msg.reason or f"ended by {op.name}", now=now)
    elif isinstance(msg, RevealCredentials):
        session = sent(core, op, "reveal_credentials", msg.session_id, now)
        core.emit(
            ReadCredentials(
                operator=op, request_id=msg.id, session_id=session.id, inventory_id=session.inventory_id
            )
        )
    elif isinstance(msg, Invite | Transfer):
        raise RefusedError("invite and transfer come with the colleague looked up", code=ErrorCode.INTERNAL)
    elif isinstance(msg, RestartRequest):
        # Only with system:restart granted (the one table); the agent checks again.
        session = sent(core, op, "restart_request", msg.session_id, now)
        if session.agent is None:
            raise RefusedError("the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND)
        core.audit("restart.request", session.id, now, actor=f"operator:{op.name}")
        core.send_agent(session.agent, RestartRequest(id=msg.id, session_id=session.id))
    elif isinstance(msg, AuditQuery | AuditVerify):
        _require_supervisor(op)
        core.emit(BrowseAudit(operator=op, message=msg))
    else:
        raise RefusedError(f"{type(msg).__name__} is not for operators", code=ErrorCode.UNEXPECTED_MESSAGE)


def detached(core: SessionCore, op: OperatorPeer, now: float) -> None:
    core.operators.discard(op)
    for session in list(core.sessions.values()):
        if op in session.viewers:
            before = session.viewer_list()
            session.viewers.discard(op)
            if op.name == session.operator and not any(v.name == session.operator for v in session.viewers):
                session.operator_away_since = now
                core.touch(session)
            if session.viewer_list() != before:
                # The subscriber and every viewer learn at once who no longer watches.
                core.broadcast_state(session)


def _require_supervisor(op: OperatorPeer) -> None:
    if not op.supervisor:
        raise RefusedError("supervisors only", code=ErrorCode.NOT_ALLOWED)


def role(op: OperatorPeer, session: Session) -> Role:
    """The operator's place in this session: its operator, or a read-only viewer."""
    return Role.OPERATOR if op.name is not None and op.name == session.operator else Role.VIEWER


def sent(core: SessionCore, op: OperatorPeer, kind: str, session_id: str, now: float) -> Session:
    """The session an operator message is for, after the one permission table
    (protocol.session SENDERS/REQUIREMENTS) allowed this operator's role to send it now."""
    session = viewed(core, op, session_id)
    _check_sender(core, op, session, kind, now)
    return session


def _check_sender(core: SessionCore, op: OperatorPeer, session: Session, kind: str, now: float) -> None:
    """:func:`check_sender`; a viewer's refused attempt is audited (once a minute per viewer
    and kind, with a count): a supervisor who tries to type is something to know."""
    try:
        check_sender(role(op, session), kind, session.phase, session.granted)
    except NotAllowed as exc:
        count = core._request_refusals.note(f"{session.id}|{op.name}|{kind}", now)
        if count is not None:
            core.audit(
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


def viewed(core: SessionCore, op: OperatorPeer, session_id: str) -> Session:
    session = core.find(session_id)
    if session.operator != op.name and not op.supervisor:
        if op.name in session.allowed_viewers:
            return session  # a colleague the subscriber allowed by name: read-only
        raise RefusedError("this session belongs to another operator", code=ErrorCode.NOT_ALLOWED)
    return session


def _claim(core: SessionCore, op: OperatorPeer, msg: Claim, now: float) -> None:
    assert op.name is not None
    if msg.code is not None:
        core.code_guard.check(op.name, op.address, now)
        found = core.by_code.get(msg.code)
        if found is None or found.phase is not Phase.WAITING or now >= found.code_expires_at:
            core.code_guard.failure(op.name, op.address, now)
            core.audit("claim.failed", op.name, now, actor=f"operator:{op.name}", address=op.address)
            raise RefusedError("no waiting request has this code", code=ErrorCode.CODE_INVALID)
        core.code_guard.success(op.name, op.address)
        session = found
    elif msg.session_id is not None:
        session = core.find(msg.session_id)
        if session.phase is not Phase.WAITING:
            raise RefusedError("this request was already taken", code=ErrorCode.NOT_ALLOWED)
    else:
        raise RefusedError("claim needs a code or a session id", code=ErrorCode.INVALID_FIELD)
    _take(core, op, msg, session, now)


def code_claimed(core: SessionCore, event: CodeClaimed, now: float) -> None:
    """A claim by code the shared database decided (single use on every process, shared lockouts)."""
    op, msg = event.operator, event.message
    assert op.name is not None
    if event.refusal is not None:
        code = ErrorCode(event.refusal.code)
        if code is ErrorCode.CODE_INVALID:
            core.audit("claim.failed", op.name, now, actor=f"operator:{op.name}", address=op.address)
        raise RefusedError(event.refusal.message, code=code, retry_after=event.refusal.retry_after)
    session = core.sessions.get(event.session_id or "")
    if session is None or session.phase is not Phase.WAITING:
        # Claimed in the database, but the request is not waiting here: its agent is held by another
        # process (event.node) or it ended in between. The code is used up either way.
        core.audit(
            "claim.elsewhere",
            event.session_id or op.name,
            now,
            actor=f"operator:{op.name}",
            node=event.node or "",
        )
        raise RefusedError("this request is held by another broker process", code=ErrorCode.NOT_FOUND)
    _take(core, op, msg, session, now)


def _take(core: SessionCore, op: OperatorPeer, msg: Claim, session: Session, now: float) -> None:
    assert op.name is not None
    if session.agent is None:
        raise RefusedError("the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND)
    session.phase = transition(session.phase, Trigger.CLAIM)
    if session.code is not None:
        core.by_code.pop(session.code, None)
        if session.shared_code and msg.code is None:  # taken from the queue: no process may claim the code
            core.emit(VoidCode(session_id=session.id, contract_id=session.contract_id, at=now))
        session.code = None  # single use
    session.operator = op.name
    session.operator_display = op.display_name
    session.claimed_at = now
    session.viewers.add(op)
    core.touch(session)
    core.audit(
        "session.claim",
        session.id,
        now,
        actor=f"operator:{op.name}",
        contract=session.contract_id,
        serial=session.serial,
        scopes=list(msg.scopes),
        by_code=msg.code is not None,
    )
    core.emit(
        PersistSessionStart(
            session_id=session.id,
            contract_id=session.contract_id,
            serial=session.serial,
            operator=op.name,
            at=now,
        )
    )
    core.send_operator(
        op,
        Claimed(
            id=msg.id,
            session_id=session.id,
            contract_id=session.contract_id,
            machine_name=session.machine_name,
        ),
    )
    core.ask_consent(session, msg.scopes, now)
    core.broadcast_queue()
    core.broadcast_state(session)


def _watch(core: SessionCore, op: OperatorPeer, msg: Watch, now: float) -> None:
    session = sent(core, op, "watch", msg.session_id, now)
    before = session.viewer_list()
    session.viewers.add(op)
    if op.name == session.operator:
        session.operator_away_since = None
        core.touch(session)
    else:
        core.audit(
            "session.supervise" if op.name not in session.allowed_viewers else "session.colleague_join",
            session.id,
            now,
            actor=f"operator:{op.name}",
            contract=session.contract_id,
            viewers=[v.name for v in session.viewer_list()],
        )
    if session.viewer_list() != before:
        # A new person sees the screen: the subscriber and every viewer are told (issue 11).
        core.broadcast_state(session)
    else:
        core.send_operator(op, session.state())
    if session.layout is not None:
        core.send_operator(op, session.layout)
    if session.inventory is not None and (op.name == session.operator or op.supervisor):
        core.send_operator(op, session.inventory)  # 別紙5 data: not for an invited colleague
    if session.agent is not None and SCREEN in session.granted:
        # A viewer connection joins a granted screen: it needs a keyframe now. (Never at the grant
        # itself: there the agent starts with a keyframe by itself, docs/session-core.md.)
        agent_side.request_keyframe(core, session)


def _input(core: SessionCore, op: OperatorPeer, msg: InputEvent, now: float) -> None:
    session = viewed(core, op, msg.session_id)
    who = role(op, session)
    if who is not Role.OPERATOR:
        _check_sender(core, op, session, "input", now)  # raises not_allowed, audited
    try:
        check_sender(who, "input", session.phase, session.granted)
    except ProtocolError as exc:
        session.refused_inputs += 1
        session.unaudited_refusals += 1
        session.refusal_actor = f"operator:{op.name}"
        session.refusal_code = exc.code.value
        if now - session.last_refusal_audit >= core.rules.refusal_audit_interval:
            flush_refusals(core, session, now)
        core.touch(session)
        raise
    if session.agent is None:
        raise RefusedError("the subscriber's PC is not connected right now", code=ErrorCode.NOT_FOUND)
    session.inputs += 1
    core.send_agent(session.agent, msg)


def flush_refusals(core: SessionCore, session: Session, now: float) -> None:
    """Audit the input refusals held back since the last ``input.refused`` entry (with their count)."""
    if not session.unaudited_refusals:
        return
    core.audit(
        "input.refused",
        session.id,
        now,
        actor=session.refusal_actor,
        contract=session.contract_id,
        code=session.refusal_code,
        count=session.unaudited_refusals,
    )
    session.last_refusal_audit = now
    session.unaudited_refusals = 0


def reveal(core: SessionCore, event: CredentialsRead, now: float) -> None:
    """別紙5 (11): the router login, shown only to the session's operator, only on request, audited."""
    op = event.operator
    session = sent(core, op, "reveal_credentials", event.session_id, now)
    if event.account is None and event.password is None:
        raise RefusedError("the subscriber entered no router login", code=ErrorCode.NOT_FOUND)
    core.audit(
        "inventory.reveal",
        session.id,
        now,
        actor=f"operator:{op.name}",
        contract=session.contract_id,
        inventory=session.inventory_id,
    )
    core.send_operator(
        op,
        CredentialsMessage(
            id=event.request_id,
            session_id=session.id,
            account=event.account or "",
            password=event.password or "",
        ),
    )
