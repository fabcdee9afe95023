"""What the subscriber reads in the terminal during a session: our own lines, and everyone else's.

DESIGN §2: "no text from anyone else (chat, names, errors) can imitate [the consent questions]".
So every string from elsewhere goes through :mod:`protocol.text` (control characters, ANSI/OSC
sequences and bidi overrides shown escaped), and chat is printed in a shape our own lines never
take: each message starts with :data:`CHAT_MARKER` and the sender's name, and every further line
of it is indented behind :data:`CHAT_CONTINUATION`. While a consent question is open, chat is
held back (up to :data:`DEFAULT_MAX_HELD` lines; the oldest are dropped beyond that, and the
subscriber is told how many) and printed after the question has closed, so nothing can appear
between the question and its answer. Our own announcements of who is in the session
(:meth:`SessionView.notice`, worded by :func:`viewer_notices`) are held the same way and come out
in the order they arrived, interleaved with the chat.

Who "can see your screen" follows the agent's own consent record, not the broker's list alone
(DESIGN §2): while the subscriber has not allowed ``screen:view`` nobody sees the screen, so a
person the broker lists has only "joined the session"; allowing the screen announces every
present person as able to see it, and withdrawing it says they no longer can.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Final, TextIO

from protocol.text import safe_lines, safe_text

from .core.texts import viewer_label, viewer_notices

__all__ = [
    "CHAT_CONTINUATION",
    "CHAT_MARKER",
    "DEFAULT_MAX_HELD",
    "SessionView",
    "format_chat",
    "viewer_label",
    "viewer_notices",
]

Person = tuple[str, str, bool]
"""A viewer as the broker lists it: ``(name, role, read_only)``."""

CHAT_MARKER: Final = "💬 "
"""Starts every chat message; none of our own lines (questions, notices) ever does."""

CHAT_CONTINUATION: Final = "    │ "
"""Starts every further line of a multi-line chat message."""

DEFAULT_MAX_HELD: Final = 200
"""Chat lines kept while a question is open; older ones are dropped beyond this."""

MAX_NAME: Final = 60
"""Characters of a sender's display name shown in a chat line."""


def format_chat(sender: str, text: str, lang: str) -> list[str]:
    """One chat message as terminal lines: ``💬 山田(オペレータ)> first line`` then indented lines."""
    ja = lang.lower().startswith("ja")
    role = "オペレータ" if ja else "operator"
    name = safe_text(sender, max_chars=MAX_NAME) if sender else ("オペレータ" if ja else "operator")
    lines = safe_lines(text)
    head = f"{CHAT_MARKER}{name}({role})> {lines[0] if lines else ''}"
    return [head, *(CHAT_CONTINUATION + line for line in lines[1:])]


class SessionView:
    """The terminal: :meth:`say` for our own text, :meth:`chat` for messages from the operator."""

    def __init__(self, out: TextIO, lang: str, *, max_held: int = DEFAULT_MAX_HELD) -> None:
        self.out = out
        self.lang = lang
        self._holds = 0
        self._held: deque[tuple[int, str]] = deque(maxlen=max_held)
        """Chat lines held while a question is open, with their arrival number."""
        self._held_notices: deque[tuple[int, str]] = deque(maxlen=max_held)
        """Our own announcements held meanwhile (a bound of their own: chat never pushes them out)."""
        self._arrivals = 0
        self._dropped = 0

    @property
    def holding(self) -> bool:
        return self._holds > 0

    def say(self, line: str) -> None:
        """Our own text (already made of safe parts by the caller)."""
        print(line, file=self.out, flush=True)

    def chat(self, sender: str, text: str) -> None:
        lines = format_chat(sender, text, self.lang)
        if self.holding:
            for line in lines:
                if len(self._held) == self._held.maxlen:
                    self._dropped += 1
                self._arrivals += 1
                self._held.append((self._arrivals, line))
            return
        for line in lines:
            self.say(line)

    def notice(self, line: str) -> None:
        """Our own announcement (who is in the session): printed now, or after the open question
        closed, in its place among the chat that arrived meanwhile."""
        if self.holding:
            self._arrivals += 1
            self._held_notices.append((self._arrivals, line))
            return
        self.say(line)

    def hold(self) -> None:
        """A question opens: chat waits until every open question has closed."""
        self._holds += 1

    def release(self) -> None:
        """A question closed: print what was held, once none is open any more."""
        self._holds = max(0, self._holds - 1)
        if self._holds:
            return
        if self._dropped:
            ja = self.lang.lower().startswith("ja")
            self.say(
                f"（質問中に届いたチャットのうち古い {self._dropped} 行は省略しました）"
                if ja
                else f"(older chat lines received during the question were left out: {self._dropped})"
            )
            self._dropped = 0
        held = list(heapq.merge(self._held, self._held_notices))
        self._held.clear()
        self._held_notices.clear()
        for _, line in held:
            self.say(line)
