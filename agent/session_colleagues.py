"""Questions about a new *person* during a session (part of :class:`agent.support.SupportSession`).

The subscriber consented to one operator (第31条1項④). When that operator invites a colleague to
watch, or hands the session to a colleague, the broker sends a ``consent_request`` naming the
person (``viewer``, ``viewer_account``, ``transfer``). The agent asks like every other consent
question (:meth:`QuestionsMixin.question`: remote input paused, chat held; default no; no answer
in time = no) and signs a receipt naming that person (``viewer_allowed`` / ``viewer_denied`` /
``viewer_timeout``, ``transfer_…``). A no changes nothing for the current operator. A transfer
allowed drops control in the same receipt: the new operator must ask for it again.

The agent cannot tell to whom the broker delivers a frame, so its second line is the viewer
list: the core asks :meth:`agent.consent_record.ConsentRecord.note_viewers` — if the broker ever
shows an invited colleague the subscriber did not allow, or one they refused, the record refuses
every screen kind and sharing stops until that person is gone (docs/consent.md).
"""

from __future__ import annotations

import contextlib

from protocol.messages import ConsentRequest, Message
from protocol.text import safe_text

from .consent import SCREEN_VIEW
from .core import inputs as inp
from .i18n import t
from .prompt import SEPARATOR

__all__ = ["ColleaguesMixin", "format_person_prompt"]


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
    """The person questions for :class:`agent.support.SupportSession`: asked here, decided by the
    core (:meth:`agent.core.AgentCore.handle` with :class:`agent.core.inputs.PersonAnswered`)."""

    lang: str

    def question(self, name: str) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    async def _ask_consent(self, request: ConsentRequest, prompt: str) -> set[str] | None:
        raise NotImplementedError

    async def feed(self, event: inp.Input | Message) -> None:
        raise NotImplementedError

    async def _consent_person(self, question: str, request: ConsentRequest) -> None:
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
            await self.feed(inp.PersonAnswered(question=question, allowed=allowed))
