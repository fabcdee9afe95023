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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from protocol.errors import ErrorCode
from protocol.messages import (
    Chat,
    ConsentDecision,
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
from protocol.receipts import ConsentReceipt
from protocol.scopes import SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW
from protocol.session import Phase
from protocol.text import safe_text

from ..consent import ConsentError, scope_label
from ..consent_record import ConsentRecord
from ..i18n import error_text, t
from . import actions as a
from . import inputs as i
from .effects import Effects, Wanted
from .questions import Questions
from .stock import InventoryFlow
from .texts import format_answer_summary

__all__ = ["EXIT_REFUSED", "EXIT_SESSION_GONE", "AgentCore", "CoreConfig", "Resume"]

EXIT_REFUSED = 5
EXIT_SESSION_GONE = 6
JST = timezone(timedelta(hours=9), "JST")
"""別記1: service hours are Japan time (no daylight saving, so a fixed offset is exact)."""

Signer = Callable[[ConsentReceipt], tuple[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """A session interrupted by a restart (:mod:`agent.resume`) and the subscriber's answer."""

    session_id: str
    operator: str
    confirmed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreConfig:
    """What the core needs from its host.

    serial:
        The agent certificate's hex serial (別紙5 (2)); it signs every receipt.
    sign:
        Signs a receipt: ``(text, signature)`` (:func:`agent.receipts.sign_receipt` with the key).
    lang:
        The subscriber's language ("ja" or "en") for every text the core renders.
    grace:
        Seconds a new grant waits before its receipt is sent, so the operator never sees
        "granted" while the consent guard still refuses input (:mod:`agent.input.consent_guard`).
    end_wait:
        Seconds to wait for the broker's ended state after our ``session_end``.
    resume:
        Continue this session (after a restart) instead of asking for a new code.
    """

    serial: str
    sign: Signer
    lang: str = "ja"
    grace: float = 0.0
    end_wait: float = 5.0
    resume: Resume | None = None


class AgentCore:
    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.lang = config.lang
        self.session_id: str | None = None
        self.record: ConsentRecord | None = None
        self.operator = ""
        self.confirmed = False
        self.capture: int | None = None
        """The monitor a frame source shows (:class:`inputs.CaptureReady`); None: no capture."""
        self.effects = Effects(config.lang)
        self.ended = False
        self.exit_code = 0
        self.restarting = False
        self.resuming = False
        self.end_on_resume = False
        self.ignored_from_broker = 0
        self._ids = 0
        self._session_ids: set[str] = set()
        self._pending: list[tuple[float, ConsentReceipt, tuple[str, ...]]] = []
        """Receipts of new grants held for the grace time: (due, receipt, items to collect)."""
        self._finish_at: float | None = None
        self.questions = Questions()
        self.stock = InventoryFlow()
        if config.resume is not None:
            self.session_id = config.resume.session_id
            self.operator = config.resume.operator
            self.record = self._new_record(config.resume.session_id)
            self.resuming = True
            self.end_on_resume = not config.resume.confirmed

    # -- API ----------------------------------------------------------------------------------------

    def start(self) -> list[a.Action]:
        """What to show before connecting (only after a restart: continuing or ending)."""
        if self.config.resume is None:
            return []
        return [self._say("support.resume_no" if self.end_on_resume else "support.resume_yes")]

    def permits(self, kind: str) -> bool:
        """The record's answer for a message kind (``screen_update`` for every frame), for the
        adapter's hot paths; also false while the broker has not confirmed the session."""
        record = self.record
        ok = record is not None and not record.ended and record.permits(kind)
        return ok and (kind != "screen_update" or self.confirmed)

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
        return [a.Send(message=Chat(session_id=self.session_id, text=text[:2000]))] if text else []

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
        question = self.questions.open(msg, now)
        if msg.viewer:
            return [a.AskPerson(question=question, request=msg)]
        return [a.AskConsent(question=question, request=msg)]

    def _state(self, state: SessionState, now: float) -> list[a.Action]:
        self.confirmed = True
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
        disagreement = self.record.disagreements(state)
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
        granted = [scope for scope, status in msg.scopes.items() if status == "granted"]
        if granted and self.record is not None:
            # Nothing allowed before the restart carries over: a signed withdrawal makes the broker agree.
            return [self._receipt(self.record.withdraw(granted, now)), *self._state(msg, now)]
        return None

    # -- the subscriber's decisions -----------------------------------------------------------------

    def _answer(self, request: ConsentRequest, chosen: set[str] | None, now: float) -> list[a.Action]:
        record = self.record
        if record is None:
            return []
        before = record.granted
        receipt = self._decide(
            lambda: record.timeout(request, now) if chosen is None else record.answer(request, chosen, now)
        )
        if receipt is None:
            return [self._ignored("consent_request refused")]
        out: list[a.Action] = [a.Say(text=format_answer_summary(receipt.granted, receipt.asked, self.lang))]
        newly = set(receipt.granted) - before
        return out + self._change(receipt, now, new=bool(newly), collect=self.stock.wanted(newly, record))

    def _person(self, request: ConsentRequest, allowed: bool | None, now: float) -> list[a.Action]:
        record = self.record
        if record is None:
            return []
        receipt = self._decide(lambda: record.person(request, allowed, now))
        if receipt is None:
            return [self._ignored("consent_request about a person refused")]
        who = safe_text(request.viewer or request.viewer_account or "?", max_chars=80)
        out: list[a.Action] = [
            self._say("support.person_allowed" if allowed else "support.person_denied", who=who)
        ]
        if allowed and request.transfer:
            self.operator = request.viewer or request.viewer_account or self.operator
            out.append(self._say("support.transferred", who=who))
        return out + self._change(receipt, now)

    def _decide(self, decide: Callable[[], ConsentReceipt]) -> ConsentReceipt | None:
        try:
            return decide()
        except ConsentError:
            return None

    def _change(
        self, receipt: ConsentReceipt | None, now: float, *, new: bool = False, collect: tuple[str, ...] = ()
    ) -> list[a.Action]:
        """Stop what is no longer granted at once; a receipt that grants something new waits for
        the guard's grace time (:meth:`handle_timer`), the others go now, in order."""
        if receipt is None:
            return []
        out = self._sync(now, start=False)
        if new and self.config.grace > 0:
            self._pending.append((now + self.config.grace, receipt, collect))
            return out
        self._pending.append((now, receipt, collect))
        return out + self._flush(now, only_due=False)

    def _flush(self, now: float, *, only_due: bool) -> list[a.Action]:
        out: list[a.Action] = []
        while self._pending and (not only_due or self._pending[0][0] <= now):
            _, receipt, collect = self._pending.pop(0)
            out.append(self._receipt(receipt))
            if self.record is not None:
                labels = ", ".join(scope_label(s, self.lang) for s in self.record.granted_in_order())
                out.append(self._say("support.scopes", scopes=labels or t("support.none", self.lang)))
            out += self.effects.announce(self.record)
            out += self._sync(now)
            if collect:
                out.append(self.stock.collect(collect))
        return out

    def _receipt(self, receipt: ConsentReceipt) -> a.Send:
        assert self.session_id is not None
        text, signature = self.config.sign(receipt)
        return a.Send(
            message=ConsentDecision(
                id=self._id(session=True), session_id=self.session_id, receipt=text, signature=signature
            )
        )

    def _inventory(self, event: i.InventoryCollected) -> list[a.Action]:
        record = self.record
        if record is None or self.session_id is None or record.ended:
            return []
        report = self.stock.report(event, record, self.session_id, self._id(session=True))
        if report is None:
            return []
        labels = ", ".join(scope_label("inventory:" + item.item, self.lang) for item in report.items)
        return [a.Send(message=report), self._say("support.inventory_sent", items=labels)]

    # -- effects ------------------------------------------------------------------------------------

    def _sync(self, now: float, *, start: bool = True) -> list[a.Action]:
        """Make sharing, input and the indicator match the record (:class:`Effects`)."""
        live = self.record is not None and not self.record.ended and not self.ended
        wanted = Wanted(
            viewing=live and self.permits("screen_update"),
            control=live and self.permits("input"),
            start=start and not self._pending,
            capture=self.capture,
        )
        return self.effects.sync(wanted, None if self.ended else self.record, self.operator)

    @property
    def sharing(self) -> int | None:
        """The monitor being shared; None: not sharing."""
        return self.effects.sharing

    def _finish(self, code: int) -> list[a.Action]:
        if self.ended:
            return []
        self.exit_code = code
        out: list[a.Action] = [a.CloseQuestion(question=q) for q in self.questions.void()]
        self.ended = True
        out += self._sync(0.0, start=False)
        self._finish_at = None
        self._pending.clear()
        return [*out, a.Finish(exit_code=code)]

    # -- helpers ------------------------------------------------------------------------------------

    def _new_record(self, session_id: str) -> ConsentRecord:
        return ConsentRecord(session_id=session_id, serial=self.config.serial)

    def _id(self, *, session: bool = False) -> str:
        self._ids += 1
        request_id = f"a{self._ids}"
        if session:  # a not_found answer to this id means the broker no longer knows the session
            self._session_ids.add(request_id)
        return request_id

    def _say(self, key: str, *, notice: bool = False, **values: object) -> a.Say:
        return a.Say(text=t(key, self.lang, **values), notice=notice)

    def _ignored(self, what: str, *scopes: str) -> a.Ignored:
        self.ignored_from_broker += 1
        return a.Ignored(what=what, scopes=scopes)
