"""The questions a support session asks the subscriber, and the lines they type (part of
:class:`agent.support.SupportSession`, split off to keep modules small).

Every question (consent, the control confirmation, ``/grant`` confirmation, the router login of
別紙5 (11)) is opened with :meth:`QuestionsMixin.question`, which

- pauses all remote input while it is open and for the guard's grace time after it closes
  (:class:`agent.input.consent_guard.ConsentGuard`): remote control cannot answer it;
- holds chat back until it has closed (:class:`agent.session_view.SessionView`): nothing from
  anyone else appears between a question and its answer;
- discards what was typed before the question was shown (the terminal's pending input, and lines
  read before it): an answer typed ahead, or injected together with the line that opened the
  question, is not taken as the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, TextIO

from protocol.messages import ConsentRequest, InventoryItem, Message

from .consent import INPUT_CONTROL, scope_label
from .core import inputs as inp
from .i18n import t
from .input.consent_guard import Rect
from .inventory.collect import collect, default_collector
from .inventory.items import Item
from .inventory.model import RouterCredentials
from .inventory.router import probe_router
from .prompt import (
    WidgetRects,
    ask_consent_dialog,
    format_consent_prompt,
    format_control_confirmation,
    hidden_input,
    is_confirmation,
    parse_consent_answer,
)
from .prompt import parse_session_command as parse_command

if TYPE_CHECKING:
    from .connection import AgentClient
    from .identity import Identity
    from .input.consent_guard import ConsentGuard
    from .prompt import Command, LineReader
    from .session_view import SessionView

__all__ = ["CREDENTIALS_TIMEOUT", "GRANT_TIMEOUT", "QuestionsMixin"]

CREDENTIALS_TIMEOUT = 120.0
"""Seconds the subscriber has to type each router login field (別紙5 (11))."""
GRANT_TIMEOUT = 60.0
"""Seconds to confirm a ``/grant`` typed in the terminal; no answer is no."""
VOID_WAIT = 3.0
"""Seconds the end of a session waits for open consent questions to close their windows."""
DIALOG_GUARD_NAME = "consent_window"

log = logging.getLogger("agent.support")


def _discard_terminal_input(stream: TextIO) -> None:
    """Throw away what the terminal holds that nobody has read yet (a line being typed)."""
    try:
        import termios

        fd = stream.fileno()
        if os.isatty(fd):
            termios.tcflush(fd, termios.TCIFLUSH)
    except (ImportError, OSError, ValueError, AttributeError):
        pass


class QuestionsMixin:
    """Questions and typed lines for :class:`agent.support.SupportSession` (which sets these)."""

    guard: ConsentGuard
    view: SessionView
    reader: LineReader
    stdin: TextIO
    lang: str
    consent_ui: frozenset[str]
    router_target: tuple[str, int]
    identity: Identity
    client: AgentClient
    _consent_tasks: set[asyncio.Task[None]]

    def say(self, line: str) -> None:
        raise NotImplementedError

    async def _command(self, command: Command) -> None:
        raise NotImplementedError

    async def feed(self, event: inp.Input | Message) -> None:
        raise NotImplementedError

    def __init__(self) -> None:
        self._answer: asyncio.Future[str | None] | None = None
        self._answer_since = 0.0
        self.typed_ahead = 0
        self._command_tasks: set[asyncio.Task[None]] = set()
        self.collector = default_collector()

    # -- framing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def question(self, name: str) -> Iterator[None]:
        """While open: no remote input, no chat printed; afterwards the guard's grace time."""
        self.guard.question_opened(name)
        self.view.hold()
        try:
            yield
        finally:
            self.guard.question_closed(name, time.monotonic())
            self.view.release()

    # -- typed lines ------------------------------------------------------------------------------

    async def _stdin_loop(self) -> None:
        while True:
            stamp, line = await self.reader.readline_stamped(None)
            if line is None:  # EOF: the terminal went away; keep the session until told otherwise
                if self._answer is not None and not self._answer.done():
                    self._answer.set_result("")
                return
            if self._answer is not None and not self._answer.done():
                if stamp < self._answer_since or self.guard.may_be_remote_typing(stamp):
                    self.typed_ahead += 1
                    self.say(t("support.typed_ahead", self.lang))
                    continue
                self._answer.set_result(line)
                continue
            # A command may ask a question of its own (``/grant``): run it beside this loop,
            # which must go on reading to deliver the answer.
            task = asyncio.create_task(self._command(parse_command(line)))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)
            await asyncio.sleep(0)  # let it open its question (if any) before the next line is read

    def _expect_answer(self) -> asyncio.Future[str | None]:
        """Open the answer window *before* the question is printed: a line read from now on is
        its answer (none is taken as a command or chat), a line read earlier is not."""
        _discard_terminal_input(self.stdin)
        self._answer_since = time.monotonic()
        self._answer = asyncio.get_running_loop().create_future()
        return self._answer

    async def _await_answer(
        self, future: asyncio.Future[str | None], timeout: float | None = None
    ) -> str | None:
        """The answer line for ``future`` (from :meth:`_expect_answer`); None on timeout or EOF."""
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            return None
        finally:
            if self._answer is future:
                self._answer = None

    async def _ask(self, prompt: str, timeout: float | None = None) -> str | None:
        future = self._expect_answer()
        self.say(prompt)
        return await self._await_answer(future, timeout)

    async def _ask_line(self, prompt: str, timeout: float, *, secret: bool = False) -> str | None:
        """One line typed by the subscriber (or None after ``timeout``); a ``secret`` one is not
        echoed by the terminal."""
        hiding = hidden_input(self.stdin) if secret else contextlib.nullcontext(False)
        with self.question("line"), hiding as hidden:
            try:
                return await self._ask(prompt, timeout)
            finally:
                if hidden:
                    self.say("")  # the Enter was not echoed either

    # -- consent ----------------------------------------------------------------------------------

    async def _void_questions(self) -> None:
        """The session ended: an open consent question is void. Its tasks are cancelled and awaited
        (bounded), so its window is closed before the end is reported and before the process
        exits, instead of staying up until the question's own timeout."""
        tasks = [task for task in self._consent_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=VOID_WAIT)

    async def _ask_consent(self, request: ConsentRequest, prompt: str) -> set[str] | None:
        """Ask in the terminal, in a window, or both (first answer wins); None = no answer in time."""
        waits: list[asyncio.Task[set[str] | None]] = []
        if "terminal" in self.consent_ui:
            future = self._expect_answer()
            self.say(prompt)
            waits.append(asyncio.create_task(self._terminal_answer(request, future)))
        if "dialog" in self.consent_ui:
            waits.append(
                asyncio.create_task(ask_consent_dialog(request, lang=self.lang, on_shown=self._dialog_shown))
            )
        try:
            done, _ = await asyncio.wait(waits, timeout=request.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            self.guard.protect(DIALOG_GUARD_NAME, None)
        for task in done:
            if not task.cancelled() and task.exception() is None:
                return task.result()
        return None

    def _dialog_shown(self, rects: WidgetRects) -> None:
        """From the dialog's thread: its place on screen, for the guard (and the log: places only)."""
        window = rects.get("window")
        if window is not None:
            self.guard.protect(DIALOG_GUARD_NAME, Rect(*window))
        log.info("consent window shown: %s", dict(rects))

    async def _terminal_answer(
        self, request: ConsentRequest, future: asyncio.Future[str | None]
    ) -> set[str] | None:
        line = await self._await_answer(future)
        if line is None:
            return None
        chosen = parse_consent_answer(line, request.scopes)
        if INPUT_CONTROL in chosen:
            confirm = await self._ask(format_control_confirmation(request, self.lang))
            if confirm is None or not is_confirmation(confirm):
                chosen.discard(INPUT_CONTROL)
        return chosen

    async def _confirm_grant(self, scopes: Iterable[str]) -> frozenset[str]:
        """``/grant`` asks once more for each scope, as a question remote input cannot answer."""
        confirmed: set[str] = set()
        with self.question("grant"):
            for scope in sorted(scopes):
                prompt = t("support.grant_confirm", self.lang, scope=scope_label(scope, self.lang))
                line = await self._ask(prompt, GRANT_TIMEOUT)
                if line is not None and is_confirmation(line):
                    confirmed.add(scope)
        return frozenset(confirmed)

    # -- consent ----------------------------------------------------------------------------------

    async def _consent(self, question: str, request: ConsentRequest) -> None:
        """Put the core's scope question to the subscriber and feed back the answer. Control is
        kept only with its extra yes: typed in the terminal (:meth:`_terminal_answer`) or the
        window's own control checkbox, so the answer says it was confirmed."""
        with self.question("consent"):
            answer = await self._ask_consent(request, format_consent_prompt(request, self.lang))
            chosen = None if answer is None else frozenset(answer)
            await self.feed(inp.Answered(question=question, chosen=chosen, control_confirmed=True))

    # -- inventory (別紙5) ------------------------------------------------------------------------

    async def _collect(self, wanted: tuple[str, ...], *, ask_router_login: bool) -> inp.InventoryCollected:
        """Run exactly the collectors the core named (items the record grants, 別紙5: item by item).

        Router credentials are never read from the router or the system: the subscriber may type
        them in here, or skip (別紙5 (11)). What may be sent of the result is the core's decision.
        """
        items = [Item(item) for item in wanted if item in Item.__members__.values()]
        credentials = None
        if ask_router_login and Item.ROUTER in items:
            account = await self._ask_line(t("support.router_account", self.lang), CREDENTIALS_TIMEOUT)
            if account:
                password = await self._ask_line(
                    t("support.router_password", self.lang), CREDENTIALS_TIMEOUT, secret=True
                )
                credentials = RouterCredentials(
                    account=account.strip()[:128], password=(password or "")[:128]
                )
        probe = (
            partial(probe_router, target=self.router_target, timeout=2.0) if Item.ROUTER in items else None
        )
        results = await asyncio.to_thread(
            collect,
            items,
            collector=self.collector,
            cert_serial=self.identity.serial,
            router_probe=probe,
            router_credentials=credentials,
        )
        return inp.InventoryCollected(
            items=tuple(
                InventoryItem(item=r.item.value, available=r.available, value=r.value, reason=r.reason)
                for r in results
            ),
            router_account=credentials.account if credentials else None,
            router_password=credentials.password if credentials else None,
        )
