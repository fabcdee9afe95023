"""The state of one session in the agent's core and the steps every handler shares: deciding with
the record, sending receipts in order, keeping the PC in step (:class:`agent.core.effects.Effects`).

:class:`agent.core.AgentCore` adds the handlers of broker messages and inputs (agent/core/session.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, timezone

from protocol.messages import (
    ConsentDecision,
    ConsentRequest,
)
from protocol.receipts import ConsentReceipt
from protocol.session import Phase
from protocol.text import safe_text

from ..consent import ConsentError, scope_label
from ..consent_record import ConsentRecord
from ..i18n import t
from . import actions as a
from . import inputs as i
from .effects import Effects, Wanted
from .questions import Questions
from .stock import InventoryFlow
from .texts import format_answer_summary

__all__ = ["EXIT_REFUSED", "EXIT_SESSION_GONE", "CoreConfig", "Resume", "SessionBase"]

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
    """

    serial: str
    sign: Signer
    lang: str = "ja"
    grace: float = 0.0
    end_wait: float = 5.0


class SessionBase:
    """State and shared steps of :class:`agent.core.AgentCore` (no handlers here)."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.lang = config.lang
        self.session_id: str | None = None
        self.record: ConsentRecord | None = None
        self.operator = ""
        self.confirmed = False
        self.phase = Phase.WAITING
        """The session's phase as the broker last said (``session_state``): what may be sent now."""
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

    def permits(self, kind: str) -> bool:
        """The record's answer for a message kind (``screen_update`` for every frame), for the
        adapter's hot paths; also false while the broker has not confirmed the session."""
        record = self.record
        ok = record is not None and not record.ended and record.permits(kind)
        return ok and (kind != "screen_update" or self.confirmed)

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
