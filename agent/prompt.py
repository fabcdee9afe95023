"""The subscriber's side of consent: the terminal prompt, the session commands, and a Tk dialog.

What the subscriber sees when an operator asks for something (第31条1項④: the subscriber accepts the
operator's remote operation; 別紙5: inventory only with consent, item by item): the operator's name,
each scope on its own numbered line, and the rules, in Japanese first with English as the fallback:

- nothing is allowed unless the subscriber says so (default deny); no answer within the request's
  timeout is a "no" to everything (DESIGN §5);
- refusing the inventory items changes nothing about the service (別紙5: "承諾しない場合であっても、
  本サービスの利用には何ら制限はありません");
- the subscriber can take a permission back or end the session at any time.

Parsing is pure (``parse_consent_answer``; the session commands' ``parse_session_command`` in
:mod:`agent.session_commands`); the I/O pieces are small: ``LineReader`` (:mod:`agent.line_reader`)
turns a blocking text stream into ``await readline(timeout)``, ``ask_consent`` puts the prompt and
the reader together, ``tk_consent_dialog`` (:mod:`agent.consent_window`) is the same question as a
window where a display exists. All of them are re-exported here. Nothing here logs what the
subscriber typed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TextIO

from protocol.messages import ConsentRequest
from protocol.text import safe_text

from .consent import (
    INPUT_CONTROL,
    INVENTORY_PREFIX,
    SYSTEM_RESTART,
    scope_label,
)
from .consent_window import (
    DialogUnavailable,
    WidgetRects,
    ask_consent_dialog,
    gui_available,
    tk_consent_dialog,
)
from .core.texts import format_answer_summary
from .i18n import is_japanese
from .line_reader import DEFAULT_MAX_LINE, DEFAULT_MAX_PENDING, LineReader, hidden_input
from .session_commands import ChatLine, Command, End, Grant, Help, Withdraw, parse_session_command

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
    "hidden_input",
    "parse_consent_answer",
    "parse_session_command",
    "tk_consent_dialog",
]


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
        return "なし" if is_japanese(lang) else "nothing"
    return "、".join(listed) if is_japanese(lang) else ", ".join(listed)


def format_consent_prompt(request: ConsentRequest, lang: str) -> str:
    """The question for ``request``, numbered the way :func:`parse_consent_answer` reads the answer.

    Framed so that nobody else's text can imitate it: it starts with :data:`SEPARATOR` and ends
    with a closing line (after :data:`SEPARATOR` again) that restates in full what each answer
    grants. The operator's name goes through :func:`protocol.text.safe_text`. No trailing newline.
    """
    scopes = tuple(dict.fromkeys(request.scopes))
    ja = is_japanese(lang)
    timeout = f"{request.timeout:g}"
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
    if is_japanese(lang):
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
    listed = tuple(dict.fromkeys(scopes))
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
