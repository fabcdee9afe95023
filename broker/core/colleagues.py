"""Inviting a colleague into a session, and transferring a session to a colleague (issue 13).

The subscriber consented to one operator (第31条1項④), so a new person who would see the screen
is asked for by name before anything reaches them, like every other consent question: default
no, timeout = no, the answer a receipt signed by the agent naming that person
(:data:`protocol.receipts.PERSON_DECISIONS`). Until the subscriber says yes, the broker delivers
that person nothing of the session: :func:`broker.core.operator_side.viewed` refuses their
``watch`` and :func:`may_see` filters every frame per viewer (the agent cannot tell to whom a
frame goes, so per-viewer delivery is the broker's job; the agent keeps the list of allowed
persons and stops sharing if the broker shows it anyone else, see ``agent/session_colleagues.py``).

A refusal changes nothing for the current operator. A transfer happens only after the yes:
the colleague becomes the session's operator, every connection of the old one is detached, and
control (``input:control``) is not carried over (the agent drops it in the same receipt), so the
new operator asks for it again. Audit: ``session.invite`` / ``session.transfer`` with ``by``,
``colleague`` and ``status`` (asked, allowed, refused, timeout).

The host looks the colleague's account up before the event (:class:`broker.core.events.PersonAsked`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from protocol.errors import ErrorCode
from protocol.messages import ConsentRequest, Invitation, InvitationStatus, Invite
from protocol.receipts import ConsentReceipt
from protocol.session import SCREEN

from ..errors import RefusedError
from .events import PersonAsked
from .state import WITHDRAWN, OperatorPeer, PendingConsent, PersonRequest, Session

if TYPE_CHECKING:
    from .core import SessionCore

__all__ = ["ask", "decided", "may_see", "resend", "timed_out"]


def may_see(session: Session, op: OperatorPeer) -> bool:
    """Whether ``op`` may receive this session's screen: its operator, a supervisor (read-only
    joins, issue 11), or a colleague the subscriber allowed by name."""
    return op.name is not None and (
        op.name == session.operator or op.supervisor or op.name in session.allowed_viewers
    )


def _connections(core: SessionCore, name: str) -> list[OperatorPeer]:
    return sorted(
        (o for o in core.operators if o.name == name and not o.must_change_password), key=lambda o: id(o)
    )


def _notice(
    session: Session, person: PersonRequest, status: InvitationStatus, id: str | None = None
) -> Invitation:
    return Invitation(
        session_id=session.id,
        kind=person.kind,
        status=status,
        by=person.by,
        by_display=person.by_display[:255],
        colleague=person.colleague,
        colleague_display=person.colleague_display[:255],
        contract_id=session.contract_id,
        machine_name=session.machine_name,
        id=id,
    )


def _tell(
    core: SessionCore,
    session: Session,
    person: PersonRequest,
    status: InvitationStatus,
    skip: OperatorPeer | None = None,
) -> None:
    """Every connection of the inviter and of the colleague learns where it stands."""
    for name in dict.fromkeys((person.by, person.colleague)):
        for op in _connections(core, name):
            if op is not skip:
                core.send_operator(op, _notice(session, person, status))


def ask(core: SessionCore, event: PersonAsked, now: float) -> None:
    """The session's operator invites ``msg.colleague`` or hands the session over: refusals first
    (viewer, self, unknown, offline, a question already open), then the subscriber is asked."""
    from .operator_side import sent  # the two modules use each other

    op, msg = event.operator, event.message
    kind: Literal["invite", "transfer"] = "invite" if isinstance(msg, Invite) else "transfer"
    session = sent(core, op, kind, msg.session_id, now)
    assert op.name is not None
    colleague = msg.colleague
    if colleague == op.name:
        raise RefusedError("you cannot invite yourself", code=ErrorCode.SELF_INVITE)
    online = _connections(core, colleague)
    if not event.known:
        raise RefusedError(f"no operator is called {colleague}", code=ErrorCode.COLLEAGUE_UNKNOWN)
    if not online:
        raise RefusedError(f"{colleague} is not logged in", code=ErrorCode.COLLEAGUE_OFFLINE)
    if session.pending is not None:
        raise RefusedError("the subscriber is still answering", code=ErrorCode.INVALID_STATE)
    display = event.display_name or online[0].display_name or colleague
    person = PersonRequest(
        kind=kind,
        colleague=colleague,
        colleague_display=display,
        by=op.name,
        by_display=op.display_name or op.name,
    )
    if kind == "invite" and colleague in session.allowed_viewers:
        # Already allowed by the subscriber: tell both again, ask nothing new.
        core.send_operator(op, _notice(session, person, "allowed", id=msg.id))
        _tell(core, session, person, "allowed", skip=op)
        return
    session.pending = PendingConsent(
        request_id=core.next_request_id(),
        scopes=(SCREEN,),
        deadline=now + core.rules.consent_timeout + core.rules.consent_slack,
        person=person,
    )
    core.touch(session)
    core.audit(
        f"session.{kind}",
        session.id,
        now,
        actor=f"operator:{op.name}",
        contract=session.contract_id,
        by=op.name,
        colleague=colleague,
        status="asked",
    )
    resend(core, session)
    core.send_operator(op, _notice(session, person, "asked", id=msg.id))
    _tell(core, session, person, "asked", skip=op)


def resend(core: SessionCore, session: Session) -> None:
    """(Re)send the open person question to the agent (also after the agent reconnected)."""
    pending = session.pending
    if pending is None or pending.person is None or session.agent is None:
        return
    person = pending.person
    core.send_agent(
        session.agent,
        ConsentRequest(
            id=pending.request_id,
            session_id=session.id,
            operator=(person.by_display or person.by)[:255],
            scopes=(SCREEN,),
            timeout=core.rules.consent_timeout,
            viewer=person.colleague_display[:255] or person.colleague,
            viewer_account=person.colleague,
            transfer=person.kind == "transfer",
        ),
    )


def decided(core: SessionCore, session: Session, receipt: ConsentReceipt, now: float) -> None:
    """A signed answer about a person (already verified; its receipt is being persisted)."""
    pending = session.pending
    person = pending.person if pending is not None else None
    if person is None or receipt.viewer != person.colleague:
        raise RefusedError("no question about this person is open", code=ErrorCode.INVALID_STATE)
    expected = "viewer_" if person.kind == "invite" else "transfer_"
    if not receipt.decision.startswith(expected):
        raise RefusedError("the answer is about another kind of question", code=ErrorCode.INVALID_FIELD)
    session.pending = None
    # The receipt's ``granted`` is everything in force (a transfer drops control).
    for scope in session.granted - set(receipt.granted):
        session.scopes[scope] = WITHDRAWN
    session.granted = frozenset(receipt.granted)
    allowed = receipt.decision.endswith("_allowed")
    status: InvitationStatus = (
        "allowed" if allowed else ("timeout" if receipt.decision.endswith("_timeout") else "refused")
    )
    core.audit(
        f"session.{person.kind}",
        session.id,
        now,
        actor=f"agent:{session.serial}",
        contract=session.contract_id,
        by=person.by,
        colleague=person.colleague,
        status=status,
    )
    if allowed and person.kind == "transfer":
        _hand_over(core, session, person, now)
    elif allowed:
        session.allowed_viewers.add(person.colleague)
    _tell(core, session, person, status)
    core.broadcast_state(session)


def _hand_over(core: SessionCore, session: Session, person: PersonRequest, now: float) -> None:
    """The colleague becomes the session's operator; the old operator's connections leave."""
    old = session.operator
    session.operator = person.colleague
    session.operator_display = person.colleague_display
    session.allowed_viewers.discard(old)
    for viewer in list(session.viewers):
        if viewer.name == old and not viewer.supervisor:
            session.viewers.discard(viewer)
    # The new operator must attach within the grace period, like any operator who went away.
    if not any(v.name == session.operator for v in session.viewers):
        session.operator_away_since = now
    else:
        session.operator_away_since = None
    core.touch(session)


def timed_out(core: SessionCore, session: Session, now: float) -> None:
    """The broker's own deadline passed with no signed answer: the default, no (第31条1項④)."""
    pending = session.pending
    if pending is None or pending.person is None:
        return
    person = pending.person
    session.pending = None
    core.audit(
        f"session.{person.kind}",
        session.id,
        now,
        contract=session.contract_id,
        by=person.by,
        colleague=person.colleague,
        status="timeout",
    )
    _tell(core, session, person, "timeout")
