"""What the subscriber types during a session: ``/end``, ``/withdraw``, ``/grant``, ``/help``, or chat.

Parsing is pure (:func:`parse_session_command`); Japanese and English words alike. Re-exported by
:mod:`agent.prompt`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .consent import (
    ALL_SCOPES,
    INPUT_CONTROL,
    INVENTORY_PREFIX,
    INVENTORY_SCOPES,
    ITEM_LABELS,
    SCREEN_VIEW,
)

__all__ = ["ChatLine", "Command", "End", "Grant", "Help", "Withdraw", "parse_session_command"]


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
