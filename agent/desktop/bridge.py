"""The seam between the desktop window (Tk, main thread) and the existing session code (asyncio, a
worker thread): :class:`SupportSession` runs unchanged; this module only listens and talks to it.

- What the session says (the same lines the terminal shows) arrives as :class:`Line` events, each
  line made safe for display with :func:`protocol.text.safe_text`.
- What the window must show big comes from the messages themselves: :class:`CodeShown` (the
  support code), :class:`OperatorShown` (the operator's name, made safe), :class:`Finished`.
- The subscriber's chat and "終了" go to the session as the terminal's would (a pipe standing in
  for the keyboard; "end" through :meth:`SupportSession.end`).
- Consent is asked in the session's own Tk consent window (``consent_ui={"dialog"}``, the rules of
  agent/prompt.py), on top of this window.

Events cross threads through a :class:`queue.Queue` the window polls; nothing here touches Tk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from protocol.errors import ErrorCode
from protocol.messages import Chat, ConsentRequest, Error, Message, SessionState, SupportCodeIssued
from protocol.session import Phase
from protocol.text import safe_text

from ..identity import Identity
from ..optional import missing_dependency
from ..prompt import ChatLine, parse_session_command
from ..resume import RESUME_FILE, RESUME_MAX_AGE, Resumable, load_resumable, save_resumable

__all__ = [
    "RESUME_FILE",
    "RESUME_MAX_AGE",
    "CodeShown",
    "Event",
    "Finished",
    "Line",
    "OperatorShown",
    "Resumable",
    "SessionBridge",
    "load_resumable",
    "save_resumable",
]

MAX_CHAT: int = 2000
"""Characters of one chat message (the terminal's limit, DESIGN §2)."""
YOU: dict[str, str] = {"ja": "あなた", "en": "you"}
END_WAIT: float = 15.0
"""Seconds the window waits for the session to finish after "終了" before closing anyway."""


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class CodeShown:
    code: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class OperatorShown:
    name: str


@dataclass(frozen=True, slots=True)
class Finished:
    exit_code: int
    error: str = ""


Event = Line | CodeShown | OperatorShown | Finished


class _Lines:
    """A text stream for the session's ``out``: every complete line becomes a :class:`Line`."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._emit(Line(safe_text(line)))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def desktop_session_class() -> type[Any]:
    """:class:`SupportSession` with a listener on its messages (imported late: it needs the
    ``agent`` extra, whose absence the window reports as ``missing_dependency``)."""
    from ..support import SupportSession

    class DesktopSession(SupportSession):
        emit: Callable[[Event], None]
        shown_operator = ""
        saved = False

        async def _on_message(self, client: Any, msg: Message) -> None:
            if self.resuming and isinstance(msg, Error) and msg.code == ErrorCode.NOT_FOUND.value:
                self.resuming = False  # the broker has ended it meanwhile: nothing to continue
                self.emit(Line(safe_text(msg.message)))
                self.done.set()
                return
            # The rest of resuming (withdraw what is left, or end when unconfirmed) is the
            # session's own: agent.session_restart.RestartMixin.
            if isinstance(msg, SupportCodeIssued) and self.session_id is None:
                self.emit(CodeShown(code=msg.code, expires_at=msg.expires_at))
            elif (
                isinstance(msg, SessionState | ConsentRequest)
                and msg.operator
                and msg.operator != self.shown_operator
            ):
                self.shown_operator = msg.operator
                self.emit(OperatorShown(safe_text(msg.operator, max_chars=64)))
            if (
                isinstance(msg, SessionState)
                and msg.operator
                and Phase(msg.phase) is not Phase.ENDED
                and self.session_id is not None
                and not self.saved
            ):
                self.saved = True
                save_resumable(self.identity.data_dir, self.session_id, msg.operator)
            await super()._on_message(client, msg)

    return DesktopSession


class SessionBridge:
    """One support session in a worker thread, driven from the window."""

    def __init__(
        self,
        identity: Identity,
        *,
        lang: str,
        test_pattern: bool = False,
        consent_ui: frozenset[str] = frozenset({"dialog"}),
        resume: Resumable | None = None,
        end_on_resume: bool = False,
    ) -> None:
        """``resume``: continue that session (same operator, no new code) after the window was
        restarted; with ``end_on_resume`` only to end it at the broker (nobody confirmed)."""
        self.identity = identity
        self.resume = resume
        self.end_on_resume = end_on_resume
        self.lang = lang
        self.test_pattern = test_pattern
        self.consent_ui = consent_ui
        self.events: queue.Queue[Event] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None
        self._keyboard: TextIO | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="support-session", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        read_fd, write_fd = os.pipe()
        self._keyboard = os.fdopen(write_fd, "w", encoding="utf-8", buffering=1)
        stdin = os.fdopen(read_fd, "r", encoding="utf-8")
        exit_code, error = 1, ""
        try:
            exit_code = asyncio.run(self._run(stdin))
            if not getattr(self._session, "restarting", False):  # a granted restart resumes it
                (self.identity.data_dir / RESUME_FILE).unlink(missing_ok=True)  # ended: nothing to resume
        except Exception as exc:  # shown to the subscriber as a code, never a traceback
            missing = missing_dependency(exc) if isinstance(exc, ModuleNotFoundError) else None
            error = missing.code if missing is not None else getattr(exc, "code", type(exc).__name__)
        finally:
            self._ready.set()
            with contextlib.suppress(OSError):
                self._keyboard.close()
            self.events.put(Finished(exit_code, error))

    async def _run(self, stdin: TextIO) -> int:
        from ..support import default_devices
        from ..support_devices import indicator_wanted

        source, sink = default_devices(test_pattern=self.test_pattern)
        session = desktop_session_class()(
            self.identity,
            lang=self.lang,
            stdin=stdin,
            out=_Lines(self.events.put),
            source=source,
            sink=sink,
            consent_ui=self.consent_ui,
            indicator=indicator_wanted(),  # the "being watched" window, as in the terminal (issue 11)
        )
        session.emit = self.events.put
        if self.resume is not None:
            # Nothing is granted after a restart: the operator asks again and the subscriber answers
            # again on screen (第31条1項④); the broker resumes the session for the same operator.
            session.start_resume(self.resume, confirmed=not self.end_on_resume)
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        return int(await session.run())

    def _call(self, make: Callable[[], Any]) -> None:
        if self._loop is None or self._session is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop just ended
            asyncio.run_coroutine_threadsafe(make(), self._loop)

    def send_chat(self, text: str) -> None:
        """A line typed by the subscriber: chat (or the answer to a question the session asked).
        Text that would read as a terminal command ("/end", "q") goes as chat, not as a command."""
        text = text.strip()[:MAX_CHAT]
        if not text:
            return
        session = self._session
        answering = session is not None and getattr(session, "_answer", None) is not None
        if not answering:  # the subscriber sees their own message; an answer (a password) is not shown
            self.events.put(Line(safe_text(f"[{YOU.get(self.lang, YOU['en'])}] {text}")))
        if isinstance(parse_session_command(text), ChatLine) and self._keyboard is not None:
            with contextlib.suppress(OSError, ValueError):
                self._keyboard.write(text + "\n")
            return
        if session is not None and session.session_id is not None:
            sid = session.session_id
            self._call(lambda: session.client.send(Chat(session_id=sid, text=text)))

    def end(self) -> None:
        """ "終了": end the session (the broker confirms; the session then finishes)."""
        if not self._ready.wait(END_WAIT):
            return
        session = self._session
        if session is not None:
            self._call(lambda: session.end("ended by the subscriber"))

    def join(self, timeout: float = END_WAIT) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
