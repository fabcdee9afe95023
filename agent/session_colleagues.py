"""Questions about a new *person* during a session (part of :class:`agent.support.SupportSession`).

The subscriber consented to one operator (第31条1項④). When that operator invites a colleague to
watch, or hands the session to a colleague, the broker sends a ``consent_request`` naming the
person (``viewer``, ``viewer_account``, ``transfer``). The agent asks like every other consent
question (:meth:`QuestionsMixin.question`: remote input paused, chat held; default no; no answer
in time = no) and signs a receipt naming that person (``viewer_allowed`` / ``viewer_denied`` /
``viewer_timeout``, ``transfer_…``). A no changes nothing for the current operator. A transfer
allowed drops control in the same receipt: the new operator must ask for it again.

The agent cannot tell to whom the broker delivers a frame, so its second line is the viewer list:
:meth:`agent.consent_record.ConsentRecord.note_viewers` — if the broker ever shows an invited
colleague the subscriber did not allow, or one they refused, the record refuses every screen
kind and sharing stops until that person is gone (docs/consent.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from protocol.messages import ConsentRequest, SessionState
from protocol.receipts import ConsentReceipt
from protocol.text import safe_text

from .consent import SCREEN_VIEW, ConsentError
from .i18n import t
from .prompt import SEPARATOR

if TYPE_CHECKING:
    from .consent_record import ConsentRecord
    from .session_view import SessionView

__all__ = ["ColleaguesMixin", "format_person_prompt"]

log = logging.getLogger("agent.support")


def format_person_prompt(request: ConsentRequest, lang: str) -> str:
    """The question about one person, framed like every consent question (SEPARATOR lines)."""
    who = safe_text(request.viewer or request.viewer_account or "?", max_chars=80)
    by = safe_text(request.operator, max_chars=80)
    lines = ["", SEPARATOR, t("support.person_ask", lang, who=who)]
    lines.append(
        t("support.person_transfer" if request.transfer else "support.person_invite", lang, who=who, by=by)
    )
    lines.append(t("support.person_answer", lang, who=who, timeout=f"{request.timeout:g}"))
    lines.append(SEPARATOR)
    return "\n".join(lines)


class ColleaguesMixin:
    """The person questions for :class:`agent.support.SupportSession` (which sets these)."""

    record: ConsentRecord | None
    lang: str
    operator: str
    view: SessionView

    def say(self, line: str) -> None:
        raise NotImplementedError

    def _ignored(self, what: str, *scopes: str) -> None:
        raise NotImplementedError

    def question(self, name: str) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    async def _ask_consent(self, request: ConsentRequest, prompt: str) -> set[str] | None:
        raise NotImplementedError

    async def _after_change(self, receipt: ConsentReceipt, *, newly_granted: bool = False) -> None:
        raise NotImplementedError

    async def _consent_person(self, request: ConsentRequest) -> None:
        record = self.record
        if record is None:
            return
        who = safe_text(request.viewer or request.viewer_account or "?", max_chars=80)
        # The dialog (if any) shows the person as the one asking to see the screen.
        shown = ConsentRequest(
            id=request.id,
            session_id=request.session_id,
            operator=request.viewer or request.viewer_account or "?",
            scopes=(SCREEN_VIEW,),
            timeout=request.timeout,
        )
        with self.question("consent"):
            answer = await self._ask_consent(shown, format_person_prompt(request, self.lang))
            allowed = None if answer is None else SCREEN_VIEW in answer
            try:
                receipt = record.person(request, allowed, time.time())
            except ConsentError as exc:
                self._ignored(f"consent_request about a person refused: {exc.code}")
                return
            self.say(t("support.person_allowed" if allowed else "support.person_denied", self.lang, who=who))
        if allowed and request.transfer:
            self.operator = request.viewer or request.viewer_account or self.operator
            self.say(t("support.transferred", self.lang, who=who))
        await self._after_change(receipt)

    def _check_persons(self, state: SessionState) -> None:
        """The broker's viewer list against the persons the subscriber allowed (second line)."""
        record = self.record
        if record is None:
            return
        before = not record.permits("screen_update")
        unexpected = record.note_viewers(state.viewers)
        if unexpected and not before:
            names = ", ".join(safe_text(n, max_chars=60) for n in unexpected)
            self.say(t("support.person_unexpected", self.lang, who=names))
            self._ignored("session_state showing a person the subscriber did not allow", SCREEN_VIEW)
