"""The subscriber's side of consent: the terminal prompt, the session commands, and a Tk dialog.

What the subscriber sees when an operator asks for something (第31条1項④: the subscriber accepts the
operator's remote operation; 別紙5: inventory only with consent, item by item): the operator's name,
each scope on its own numbered line, and the rules, in Japanese first with English as the fallback:

- nothing is allowed unless the subscriber says so (default deny); no answer within the request's
  timeout is a "no" to everything (DESIGN §5);
- refusing the inventory items changes nothing about the service (別紙5: "承諾しない場合であっても、
  本サービスの利用には何ら制限はありません");
- the subscriber can take a permission back or end the session at any time.

Parsing is pure (``parse_consent_answer``, ``parse_session_command``); the I/O pieces are small:
``LineReader`` turns a blocking text stream into ``await readline(timeout)``, ``ask_consent`` puts
the prompt and the reader together, ``tk_consent_dialog`` is the same question as a window where a
display exists. Nothing here logs what the subscriber typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from protocol.messages import ConsentRequest
from protocol.text import safe_text

from .consent import (
    ALL_SCOPES,
    INPUT_CONTROL,
    INVENTORY_PREFIX,
    INVENTORY_SCOPES,
    ITEM_LABELS,
    SCREEN_VIEW,
    SYSTEM_RESTART,
    scope_label,
)
from .core.texts import format_answer_summary

__all__ = [
    "DEFAULT_MAX_LINE",
    "DEFAULT_MAX_PENDING",
    "ChatLine",
    "Command",
    "DialogUnavailable",
    "End",
    "Grant",
    "Help",
    "LineReader",
    "WidgetRects",
    "Withdraw",
    "ask_consent",
    "ask_consent_dialog",
    "format_answer_summary",
    "format_consent_prompt",
    "gui_available",
    "parse_consent_answer",
    "parse_session_command",
    "tk_consent_dialog",
]

DEFAULT_MAX_LINE: Final = 4096
"""Characters kept of one typed line; the rest is dropped (a chat message is at most 2000 anyway)."""

DEFAULT_MAX_PENDING: Final = 256
"""Lines read but not yet awaited; beyond this, new lines are dropped rather than queued without bound."""


def _ja(lang: str) -> bool:
    return lang.lower().startswith("ja")


def _unique(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(scopes))


def _seconds(value: float) -> str:
    return f"{value:g}"


# -- the consent prompt ----------------------------------------------------------------------------


SEPARATOR: Final = "━" * 40
"""Opens and closes every consent question in the terminal. Text from anyone else is printed only
behind the chat marker or indented under it (:mod:`agent.session_view`), never at the left margin,
so it can neither start nor end a question (DESIGN §2)."""

_CONFIRM_WORDS: Final = frozenset({"はい", "yes", "y"})


def _operator(request: ConsentRequest) -> str:
    return safe_text(request.operator, max_chars=80)


def _labels(scopes: Iterable[str], lang: str) -> str:
    listed = [scope_label(s, lang) for s in scopes]
    if not listed:
        return "なし" if _ja(lang) else "nothing"
    return "、".join(listed) if _ja(lang) else ", ".join(listed)


def format_consent_prompt(request: ConsentRequest, lang: str) -> str:
    """The question for ``request``, numbered the way :func:`parse_consent_answer` reads the answer.

    Framed so that nobody else's text can imitate it: it starts with :data:`SEPARATOR` and ends
    with a closing line (after :data:`SEPARATOR` again) that restates in full what each answer
    grants. The operator's name goes through :func:`protocol.text.safe_text`. No trailing newline.
    """
    scopes = _unique(request.scopes)
    ja = _ja(lang)
    timeout = _seconds(request.timeout)
    operator = _operator(request)
    lines: list[str] = ["", SEPARATOR]
    if ja:
        lines.append(f"【許可の確認】オペレータ「{operator}」が次の許可を求めています（第31条1項④）:")
    else:
        lines.append(f'[Permission] Operator "{operator}" asks for your permission (Art. 31(1)(iv)):')
    for n, scope in enumerate(scopes, start=1):
        lines.append(f"  {n}. {scope_label(scope, lang)}")
    if ja:
        lines += [
            "許可する項目の番号を入力して Enter を押してください（例: 1,3）。"
            "すべて許可は a、すべて拒否は n または何も入力せずに Enter。",
            f"お客様が許可しない限り、何も許可されません。{timeout}秒以内に回答がない場合は、すべて拒否します。",
        ]
    else:
        lines += [
            "Type the numbers you allow and press Enter (e.g. 1,3); "
            "a allows all, n or just Enter allows none.",
            "Nothing is allowed unless you say so: "
            f"no answer within {timeout} seconds means no to everything.",
        ]
    if any(s.startswith(INVENTORY_PREFIX) for s in scopes):
        if ja:
            lines.append(
                "情報の取得を承諾しない場合であっても、本サービスの利用には何ら制限はありません（別紙5）。"
            )
        else:
            lines.append(
                "If you do not allow the information to be collected, the service is not limited in any way "
                "(Annex 5)."
            )
    if f"{INVENTORY_PREFIX}router" in scopes:
        if ja:
            lines.append(
                "ルータのログインアカウント・パスワードは自動では取得しません。お客様が入力した場合のみ、"
                "暗号化して保存します。"
            )
        else:
            lines.append(
                "The router's login account and password are never read automatically: only what you type "
                "in yourself is stored, encrypted."
            )
    if SYSTEM_RESTART in scopes:
        lines.append(
            "再起動を許可すると、パソコンが一度止まり、保存していない作業は消えます。"
            "再起動のあと「続けますか？」とお聞きします。"
            if ja
            else "Allowing a restart turns your computer off and on: unsaved work is lost. "
            "Afterwards you are asked whether to continue."
        )
    if INPUT_CONTROL in scopes:
        lines.append(
            "操作を許可する場合は、続けて「はい」と入力する確認があります。"
            if ja
            else 'Allowing control asks you to confirm by typing "yes" next.'
        )
    if ja:
        lines.append("許可はいつでも /withdraw で取り消せます。/end でサポートを終了します。")
    else:
        lines.append("You can take a permission back at any time with /withdraw, and finish with /end.")
    lines.append(SEPARATOR)
    meanings = [f"「{n}」= {scope_label(scope, lang)}" for n, scope in enumerate(scopes, start=1)]
    if ja:
        lines.append(
            f"回答の意味（オペレータ「{operator}」への許可）: "
            + "、".join(meanings)
            + "、「a」= すべて、Enter だけ = 何も許可しない"
        )
    else:
        meanings = [f'"{n}" = {scope_label(scope, lang)}' for n, scope in enumerate(scopes, start=1)]
        lines.append(
            f'What your answer allows operator "{operator}": '
            + "; ".join(meanings)
            + '; "a" = all of them; just Enter = nothing'
        )
    return "\n".join(lines)


def format_control_confirmation(request: ConsentRequest, lang: str) -> str:
    """The confirmation step before ``input:control`` is granted in the terminal."""
    operator = _operator(request)
    if _ja(lang):
        return (
            "確認: マウスとキーボードの操作を許可すると、"
            f"オペレータ「{operator}」がこのパソコンを操作できます。"
            "よろしければ「はい」と入力して Enter を押してください（それ以外は操作を許可しません）:"
        )
    return (
        f'Confirm: allowing control lets operator "{operator}" use your mouse and keyboard. '
        'Type "yes" and press Enter to allow it (anything else does not allow control):'
    )


def is_confirmation(text: str) -> bool:
    """Only an explicit はい / yes / y confirms (default deny)."""
    return unicodedata.normalize("NFKC", text).strip().lower() in _CONFIRM_WORDS


_ALL_WORDS: Final = frozenset({"a", "all", "すべて", "全て", "全部"})
_NONE_WORDS: Final = frozenset({"", "n", "no", "none", "なし", "いいえ"})
_SEPARATORS: Final = re.compile(r"[\s,、]+")
_RANGE: Final = re.compile(r"^(\d{1,3})-(\d{1,3})\Z")


def parse_consent_answer(text: str, scopes: Sequence[str]) -> set[str]:
    """The scopes the subscriber allowed by typing ``text`` to the numbered list of ``scopes``.

    ``a`` / ``all`` / ``すべて``: every scope; empty, ``n``, ``none``: none; ``1,3`` or ``1 3`` (or
    ``1-3``, full-width digits too): those lines. Anything else, including one bad number in a
    list, allows nothing: default deny, never a guess.
    """
    listed = _unique(scopes)
    answer = unicodedata.normalize("NFKC", text).strip().lower()
    if answer in _ALL_WORDS:
        return set(listed)
    if answer in _NONE_WORDS:
        return set()
    chosen: set[str] = set()
    for token in _SEPARATORS.split(answer):
        if not token:
            continue
        span = _RANGE.fullmatch(token)
        if span is not None:
            first, last = int(span.group(1)), int(span.group(2))
        elif token.isdecimal() and len(token) <= 3:
            first = last = int(token)
        else:
            return set()
        if not 1 <= first <= last <= len(listed):
            return set()
        chosen.update(listed[first - 1 : last])
    return chosen


# -- reading lines without blocking the event loop -------------------------------------------------


@contextlib.contextmanager
def hidden_input(stream: TextIO) -> Iterator[bool]:
    """While a secret is typed (the router password, 別紙5 (11)), the terminal does not echo it.

    Yields whether echo was turned off: only for a POSIX terminal (``termios``); a pipe has no echo
    to turn off, and Windows' console is left as it is. Echo comes back however the block ends.
    The line reader thread goes on reading as before: only the terminal's echo flag changes.
    """
    try:
        import termios

        fd = stream.fileno()
        before = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (ImportError, OSError, ValueError, AttributeError):
        before = None
    if before is None:
        yield False
        return
    quiet = list(before)
    quiet[3] &= ~termios.ECHO  # lflag
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, before)


class LineReader:
    """Lines from a blocking text stream (stdin, a pipe), awaited with a timeout.

    A daemon thread reads the stream, started on the first :meth:`readline` and bound to that
    call's event loop; a thread is the one way that works the same for a terminal, a pipe and
    Windows' console. At end of input :meth:`readline` returns ``None`` and :attr:`at_eof` is
    True from then on; a ``None`` with ``at_eof`` False was a timeout. A decoding or read error
    ends the input like EOF (:attr:`error` says which).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._stream = stream
        self._max_line = max_line
        self._max_pending = max_pending
        self._queue: asyncio.Queue[tuple[float, str | None]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._dropped = 0

    @property
    def at_eof(self) -> bool:
        """True once the end of input has been returned (every later ``readline`` returns None at once)."""
        return self._eof

    @property
    def error(self) -> BaseException | None:
        """The read error that ended the input early, if any."""
        return self._error

    @property
    def dropped(self) -> int:
        """Lines dropped because more than ``max_pending`` were waiting."""
        return self._dropped

    def _start(self) -> asyncio.Queue[tuple[float, str | None]]:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._thread = threading.Thread(target=self._read, name="agent-line-reader", daemon=True)
            self._thread.start()
        elif self._loop is not loop:
            raise RuntimeError("LineReader is bound to another event loop")
        return self._queue

    def _read(self) -> None:
        assert self._loop is not None
        try:
            while True:
                line = self._stream.readline()
                if not line:
                    break
                self._deliver(line.rstrip("\r\n")[: self._max_line])
        except (OSError, ValueError) as exc:  # ValueError: closed file, UnicodeDecodeError
            self._error = exc
        self._deliver(None)

    def _deliver(self, item: str | None) -> None:
        assert self._loop is not None
        stamp = time.monotonic()  # when the line was read, not when the loop got to it
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(self._put, stamp, item)

    def _put(self, stamp: float, item: str | None) -> None:
        assert self._queue is not None
        if item is not None and self._queue.qsize() >= self._max_pending:
            self._dropped += 1
            return
        self._queue.put_nowait((stamp, item))

    async def readline(self, timeout: float | None) -> str | None:
        """The next line without its line ending; None at EOF or after ``timeout`` seconds."""
        return (await self.readline_stamped(timeout))[1]

    async def readline_stamped(self, timeout: float | None) -> tuple[float, str | None]:
        """Like :meth:`readline`, with the ``time.monotonic()`` at which the line was read.

        The session uses the time to ignore lines typed before a question was shown (typed
        ahead, or injected together with the line that opened the question).
        """
        queue = self._start()
        if self._eof:
            return time.monotonic(), None
        try:
            stamp, item = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return time.monotonic(), None
        if item is None:
            self._eof = True
        return stamp, item


async def ask_consent(
    request: ConsentRequest,
    *,
    reader: LineReader,
    out: TextIO,
    lang: str,
    now: Callable[[], float],
) -> set[str] | None:
    """Print the prompt for ``request`` and wait up to ``request.timeout`` for one answer line.

    Returns the scopes allowed (possibly none), or None when nothing was answered in time or the
    input ended: the caller records that as ``ConsentState.timeout`` (everything asked denied).
    ``now`` is a monotonic clock in seconds.
    """
    out.write(format_consent_prompt(request, lang) + "\n> ")
    out.flush()
    deadline = now() + request.timeout
    remaining = deadline - now()
    if remaining <= 0:
        return None
    line = await reader.readline(remaining)
    if line is None:
        return None
    return parse_consent_answer(line, request.scopes)


# -- commands during a session ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class End:
    """``/end``, ``q``, ``/終了``: the subscriber ends the session (any time, 第31条1項④)."""


@dataclass(frozen=True, slots=True)
class Withdraw:
    """``/withdraw control|view|inventory|all|<item>``: take these scopes back."""

    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Grant:
    """``/grant control|view``: allow these scopes without being asked."""

    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Help:
    """``/help``, ``?``, or any command the agent does not understand."""


@dataclass(frozen=True, slots=True)
class ChatLine:
    """Anything else: a chat message to the operator (empty text: nothing to send)."""

    text: str


Command = End | Withdraw | Grant | Help | ChatLine

_END_WORDS: Final = frozenset({"/end", "/quit", "/exit", "/q", "q", "/終了", "/おわり", "/終わり"})
_HELP_WORDS: Final = frozenset({"/help", "/h", "/?", "?", "/ヘルプ"})
_WITHDRAW_WORDS: Final = frozenset({"/withdraw", "/revoke", "/取消", "/取り消し", "/取消し"})
_GRANT_WORDS: Final = frozenset({"/grant", "/allow", "/許可"})

_VIEW_WORDS: Final = frozenset({"view", "screen", "画面"})
_CONTROL_WORDS: Final = frozenset({"control", "input", "操作"})
_INVENTORY_WORDS: Final = frozenset({"inventory", "info", "情報"})
_ALL_TARGETS: Final = frozenset({"all", "a", "すべて", "全て", "全部"})


def _targets(words: Sequence[str], *, withdraw: bool) -> frozenset[str] | None:
    """Scopes named by ``words``, or None if any word is not understood (then nothing changes)."""
    scopes: set[str] = set()
    for word in words:
        if word in _VIEW_WORDS:
            scopes.add(SCREEN_VIEW)
        elif word in _CONTROL_WORDS:
            scopes.add(INPUT_CONTROL)
        elif withdraw and word in _ALL_TARGETS:
            scopes.update(ALL_SCOPES)
        elif withdraw and word in _INVENTORY_WORDS:
            scopes.update(INVENTORY_SCOPES)
        elif withdraw and word in ITEM_LABELS:
            scopes.add(f"{INVENTORY_PREFIX}{word}")
        else:
            return None
    return frozenset(scopes) if scopes else None


def parse_session_command(line: str) -> Command:
    """What the subscriber typed during a session.

    Commands start with ``/`` (full-width ``／`` too); ``q`` alone also ends. ``/grant`` takes only
    ``view`` and ``control`` (inventory is given when the operator asks, item by item); ``/withdraw``
    also takes ``inventory``, ``all`` and single 別紙5 item ids. A command with a missing or unknown
    target, or an unknown command, is :class:`Help`, never sent as chat. Anything else is chat.
    """
    normalized = unicodedata.normalize("NFKC", line).strip()
    words = [w for w in re.split(r"[\s,、]+", normalized.lower()) if w]
    if not words:
        return ChatLine(line.strip())
    head, rest = words[0], words[1:]
    if head in _END_WORDS and not rest:
        return End()
    if head in _HELP_WORDS and not rest:
        return Help()
    if head in _WITHDRAW_WORDS or head in _GRANT_WORDS:
        withdraw = head in _WITHDRAW_WORDS
        scopes = _targets(rest, withdraw=withdraw)
        if scopes is None:
            return Help()
        return Withdraw(scopes) if withdraw else Grant(scopes)
    if head.startswith("/"):
        return Help()
    return ChatLine(line.strip())


# -- the dialog (agent/consent_window.py; re-exported here for callers of the older place) --------

from .consent_window import (  # noqa: E402
    DialogUnavailable,
    WidgetRects,
    ask_consent_dialog,
    gui_available,
    tk_consent_dialog,
)
