"""The agent's session core: one support session from the subscriber's side, without I/O or clock.

Inputs: ``protocol.messages`` objects from the broker (:meth:`AgentCore.receive`) and the
adapter's :mod:`agent.core.inputs` (:meth:`AgentCore.handle`), each with ``now`` (seconds, the
wall clock: receipts carry it). Output: a list of :mod:`agent.core.actions`. Timers (a consent
question's timeout = deny, the grace before a new grant is announced, the end's fallback) are
:meth:`AgentCore.next_timer` / :meth:`AgentCore.handle_timer`, so tests need no sleeping.

The agent is the authority on consent (DESIGN §2): the :class:`ConsentRecord` changes only through
the subscriber's answers, ``/grant``, withdrawals and the end; a broker message contradicting it
changes nothing and yields :class:`actions.Ignored`. Sharing starts exactly once per grant
(:class:`agent.core.effects.Effects`): a ``session_state`` confirming what is already shared starts nothing.
"""

from __future__ import annotations

from datetime import datetime

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Chat,
    ConsentRequest,
    Error,
    InputEvent,
    Message,
    RestartNotice,
    RestartRequest,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
)
from protocol.scopes import GRANTED, SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW
from protocol.session import Phase, check_allowed
from protocol.text import safe_text

from ..i18n import error_text, t
from . import actions as a
from . import inputs as i
from .state import EXIT_REFUSED, EXIT_SESSION_GONE, JST, CoreConfig, Resume, SessionBase

__all__ = ["EXIT_REFUSED", "EXIT_SESSION_GONE", "AgentCore", "CoreConfig", "Resume"]


class AgentCore(SessionBase):
    """One support session on the subscriber's side (docs/agent-core.md).

    ``receive(message, now)`` for the broker's messages, ``handle(input, now)`` for the adapter's
    :mod:`agent.core.inputs`, ``handle_timer(now)`` when :meth:`next_timer` is due: each returns the
    :mod:`agent.core.actions` to run, in order. ``resume(...)`` before connecting continues a
    session interrupted by a restart. Nothing here reads a clock or does I/O.
    """

    # -- API ----------------------------------------------------------------------------------------

    def resume(self, resume: Resume) -> list[a.Action]:
        """Continue a session interrupted by a restart (before connecting): same operator, no new
        code, an empty record; unconfirmed, it is resumed only to be ended (issue 16)."""
        self.session_id = resume.session_id
        self.operator = resume.operator
        self.record = self._new_record(resume.session_id)
        self.resuming = True
        self.end_on_resume = not resume.confirmed
        return [self._say("support.resume_yes" if resume.confirmed else "support.resume_no")]

    def next_timer(self) -> float | None:
        times = [due for due, _, _ in self._pending[:1]]
        times += [t for t in (self.questions.next_deadline(), self._finish_at) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[a.Action]:
        out: list[a.Action] = []
        for question, request, person in self.questions.due(now):
            out.append(a.CloseQuestion(question=question))
            if person:
                out += self._person(request, None, now)
            else:
                out += self._answer(request, None, now)
        out += self._flush(now, only_due=True)
        if self._finish_at is not None and now >= self._finish_at and not self.ended:
            out += self._finish(self.exit_code)
        return out

    def handle(self, event: i.Input, now: float) -> list[a.Action]:
        if isinstance(event, i.Connected):
            return [
                a.Send(
                    message=SupportRequest(
                        id=self._id(session=self.session_id is not None), resume=self.session_id
                    )
                )
            ]
        if isinstance(event, i.Disconnected):
            self.confirmed = False  # nothing flows until the broker confirms us again
            return self._sync(now, start=False)
        if isinstance(event, i.CaptureReady):
            self.capture = event.monitor
            return self._sync(now)
        if isinstance(event, i.Answered):
            request = self.questions.take(event.question)
            if request is None:
                return []  # already timed out or void
            chosen = None if event.chosen is None else set(event.chosen)
            if chosen is not None and not event.control_confirmed:
                chosen.discard(SCOPE_CONTROL)  # control needs the typed yes (第31条1項④)
            return self._answer(request, chosen, now)
        if isinstance(event, i.PersonAnswered):
            request = self.questions.take(event.question)
            return [] if request is None else self._person(request, event.allowed, now)
        if isinstance(event, i.InventoryCollected):
            return self._inventory(event)
        if isinstance(event, i.RebootFailed):
            self.restarting = False
            text = t("support.restart_failed", self.lang)
            out: list[a.Action] = [a.Say(text=text)]
            if self.session_id is not None:
                out.append(a.Send(message=Chat(session_id=self.session_id, text=text)))
            return out
        record = self.record
        if self.session_id is None or record is None or record.ended:
            return self._finish(0) if isinstance(event, i.EndRequested) else []
        if isinstance(event, i.EndRequested):
            self._finish_at = now + self.config.end_wait
            return [
                a.Send(
                    message=SessionEnd(
                        id=self._id(session=True), session_id=self.session_id, reason=event.reason
                    )
                )
            ]
        if isinstance(event, i.Withdrawn):
            return self._change(self._decide(lambda: record.withdraw(event.scopes, now)), now)
        if isinstance(event, i.Granted):
            return self._change(self._decide(lambda: record.grant(event.scopes, now)), now, new=True)
        text = event.text.strip()
        if not text:
            return []
        try:
            check_allowed("chat", self.phase, record.granted)  # the broker's table, asked first
        except ProtocolError:
            return [self._say("support.chat_waiting")]  # nobody has taken the request yet
        return [a.Send(message=Chat(session_id=self.session_id, text=text[:2000]))]

    def receive(self, msg: Message, now: float) -> list[a.Action]:
        """One message from the broker."""
        out = self._resume_filter(msg, now)
        if out is not None:
            return out
        if isinstance(msg, SupportCodeIssued):
            return self._code(msg, now)
        if isinstance(msg, Error):
            return self._error(msg, now)
        scoped = (ConsentRequest, SessionState, InputEvent, ScreenRefresh, Chat, RestartRequest)
        if isinstance(msg, scoped) and (msg.session_id != self.session_id or self.record is None):
            return [self._ignored(f"{msg.__class__.__name__} for another session")]
        if isinstance(msg, ConsentRequest):
            return self._ask(msg, now)
        if isinstance(msg, SessionState):
            return self._state(msg, now)
        if isinstance(msg, InputEvent):
            if not self.permits("input"):
                return [
                    self._ignored("input without input:control", SCOPE_CONTROL),
                    self._say("support.input_refused"),
                    a.Send(
                        message=Error(
                            code=ErrorCode.CONSENT_REQUIRED.value, message="input:control is not granted"
                        )
                    ),
                ]
            return [a.InjectInput(event=msg)]
        if isinstance(msg, ScreenRefresh):
            if not self.permits("screen_refresh"):
                return [self._ignored("screen_refresh without screen:view", SCOPE_VIEW)]
            return (
                [a.RefreshSharing(behind=msg.behind, monitor=msg.monitor)] if self.sharing is not None else []
            )
        if isinstance(msg, Chat):
            return [a.ShowChat(sender=msg.sender or self.operator, text=msg.text)]
        if isinstance(msg, RestartRequest):
            return self._restart(now)
        return []

    # -- broker messages ----------------------------------------------------------------------------

    def _code(self, msg: SupportCodeIssued, now: float) -> list[a.Action]:
        if self.session_id in (None, msg.session_id):
            self.confirmed = True
        if self.session_id is not None:
            return (
                []
                if msg.session_id == self.session_id
                else [self._ignored("support_code for another session")]
            )
        self.session_id = msg.session_id
        self.record = self._new_record(msg.session_id)
        minutes = max(1, round((msg.expires_at - now) / 60))
        return [self._say("support.code", code=msg.code, minutes=minutes), self._say("support.waiting")]

    def _error(self, msg: Error, now: float) -> list[a.Action]:
        shown = safe_text(error_text(msg.code, self.lang, msg.message), max_chars=300)
        if self.session_id is None:
            if msg.code == ErrorCode.SERVICE_CLOSED.value:
                opening = datetime.fromtimestamp(now + (msg.retry_after or 0), JST).strftime("%m/%d %H:%M")
                said = self._say("support.closed", opening=opening)
            else:
                said = self._say("support.refused", reason=shown)
            return [said, *self._finish(EXIT_REFUSED)]
        if msg.code == ErrorCode.NOT_FOUND.value and (
            msg.id in self._session_ids or (msg.id is None and self.confirmed)
        ):
            return self._gone(now)
        return [a.Say(text=f"[{msg.code}] {shown}")]

    def _gone(self, now: float) -> list[a.Action]:
        """The broker no longer knows our session (its restart): stop at once and say so."""
        if self.ended:
            return []
        self.confirmed = False
        if self.record is not None and not self.record.ended:
            self.record.end(now)  # nothing stays granted; no broker to send a receipt to
        return [*self._sync(now, start=False), self._say("support.gone"), *self._finish(EXIT_SESSION_GONE)]

    def _ask(self, msg: ConsentRequest, now: float) -> list[a.Action]:
        if self.questions.asking(msg) is not None:
            return []  # asked again after a reconnect: the subscriber still sees the question
        question = self.questions.open(msg, now)
        if msg.viewer:
            return [a.AskPerson(question=question, request=msg)]
        return [a.AskConsent(question=question, request=msg)]

    def _state(self, state: SessionState, now: float) -> list[a.Action]:
        self.confirmed = True
        self.phase = Phase(state.phase)
        out: list[a.Action] = []
        if state.operator and state.operator != self.operator:
            self.operator = state.operator
            out.append(
                self._say("support.claimed", notice=True, operator=safe_text(state.operator, max_chars=80))
            )
        if Phase(state.phase) is Phase.ENDED:
            if self.record is not None and not self.record.ended:
                self.record.end(now)
            by = safe_text(state.ended_by or "-", max_chars=32)
            return [*out, *self._sync(now, start=False), self._say("support.ended", by=by), *self._finish(0)]
        assert self.record is not None
        # A grant whose receipt is held for the guard's grace has not reached the broker yet: it
        # still shows "requested", which is no contradiction (a broker showing more is one).
        held = {scope for _, receipt, _ in self._pending for scope in receipt.granted}
        disagreement = tuple(
            s for s in self.record.disagreements(state) if s not in held or state.scopes.get(s) == GRANTED
        )
        if disagreement:
            out.append(self._ignored("session_state contradicting the subscriber's consent", *disagreement))
        before = not self.record.permits("screen_update")
        unexpected = self.record.note_viewers(state.viewers)
        if unexpected and not before:
            names = ", ".join(safe_text(n, max_chars=60) for n in unexpected)
            out.append(self._say("support.person_unexpected", who=names))
            out.append(
                self._ignored("session_state showing a person the subscriber did not allow", SCOPE_VIEW)
            )
        out += self.effects.announce(self.record, state.viewers)
        return out + self._sync(now)

    def _restart(self, now: float) -> list[a.Action]:
        record = self.record
        if record is None or not record.permits("restart_request"):
            message = Error(code=ErrorCode.CONSENT_REQUIRED.value, message="system:restart is not granted")
            return [
                self._ignored("restart_request without system:restart", SCOPE_RESTART),
                a.Send(message=message),
            ]
        if self.restarting or self.session_id is None:
            return []
        self.restarting = True
        out: list[a.Action] = [
            a.SaveResume(session_id=self.session_id, operator=self.operator),
            self._say("support.restarting"),
            a.Send(message=RestartNotice(id=self._id(session=True), session_id=self.session_id)),
        ]
        if record.granted:  # nothing granted carries over the restart (第31条1項④)
            out += self._change(record.withdraw(record.granted, now), now)
        return [*out, a.Reboot()]

    def _resume_filter(self, msg: Message, now: float) -> list[a.Action] | None:
        if self.end_on_resume and isinstance(msg, ConsentRequest):
            return []  # being ended: a question re-sent on resume is not put to the subscriber
        if not (self.resuming and isinstance(msg, SessionState) and msg.session_id == self.session_id):
            return None
        self.resuming = False
        if self.end_on_resume:  # nobody confirmed on screen after the restart: end it (issue 16)
            self.confirmed = True
            return self.handle(i.EndRequested(reason="the subscriber did not confirm after the restart"), now)
        granted = [scope for scope, status in msg.scopes.items() if status == GRANTED]
        if granted and self.record is not None:
            # Nothing allowed before the restart carries over: a signed withdrawal makes the broker agree.
            return [self._receipt(self.record.withdraw(granted, now)), *self._state(msg, now)]
        return None
