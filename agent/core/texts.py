"""Texts the core shows the subscriber: pure functions of names, scopes and the language.

Moved here from :mod:`agent.session_view` and :mod:`agent.prompt` (which re-export them) so the
core imports no terminal code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from protocol.text import safe_text

from ..consent import scope_label
from ..i18n import t

__all__ = ["MAX_NAME", "Person", "format_answer_summary", "viewer_label", "viewer_notices"]

Person = tuple[str, str, bool]
"""A viewer as the broker lists it: ``(name, role, read_only)``."""

MAX_NAME: Final = 60
"""Characters of a person's display name shown to the subscriber."""


def _ja(lang: str) -> bool:
    return lang.lower().startswith("ja")


def _unique(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(scopes))


def _labels(scopes: Iterable[str], lang: str) -> str:
    listed = [scope_label(s, lang) for s in scopes]
    if not listed:
        return "なし" if _ja(lang) else "nothing"
    return "、".join(listed) if _ja(lang) else ", ".join(listed)


def viewer_label(name: str, role: str, read_only: bool, lang: str) -> str:
    """``山田（オペレータ）`` / ``Sato (supervisor, view only)``: a viewer as the subscriber reads it."""
    ja = lang.lower().startswith("ja")
    labels = {"operator": ("オペレータ", "operator"), "supervisor": ("スーパーバイザー", "supervisor")}
    role_text = labels.get(role, (role, role))[0 if ja else 1]
    if read_only:
        role_text += "・閲覧のみ" if ja else ", view only"
    shown = safe_text(name, max_chars=MAX_NAME)
    return f"{shown}（{role_text}）" if ja else f"{shown} ({role_text})"


def viewer_notices(
    before: Iterable[Person], after: Iterable[Person], *, saw: bool, sees: bool, lang: str
) -> list[str]:
    """What to tell the subscriber when the people in the session or the screen permission change.

    ``saw``/``sees``: whether the agent's own record granted ``screen:view`` at the last notice and
    now. Only while it does can anyone see the screen: then arrivals "can now see your screen" and
    departures "stopped watching"; otherwise they "joined" or "left the session". When the
    permission is given, everyone present "can now see your screen"; when it is taken back, each
    of them "can no longer see your screen".
    """
    old, new = set(before), set(after)
    joined, left, stayed = new - old, old - new, old & new
    if saw and sees:
        changes = [("support.viewer_joined", joined), ("support.viewer_left", left)]
    elif not saw and not sees:
        changes = [("support.viewer_present", joined), ("support.viewer_gone", left)]
    elif sees:  # the screen was just allowed
        changes = [("support.viewer_joined", stayed | joined), ("support.viewer_gone", left)]
    else:  # the screen was just taken back
        changes = [
            ("support.viewer_present", joined),
            ("support.viewer_unseen", stayed),
            ("support.viewer_left", left),
        ]
    return [
        t(key, lang, who=viewer_label(name, role, read_only, lang))
        for key, people in changes
        for name, role, read_only in sorted(people)
    ]


def format_answer_summary(granted: Iterable[str], asked: Sequence[str], lang: str) -> str:
    """What the answer did, in full: printed right after the question closes."""
    chosen = [s for s in _unique(asked) if s in set(granted)]
    refused = [s for s in _unique(asked) if s not in set(granted)]
    if _ja(lang):
        return f"回答を受け付けました。許可: {_labels(chosen, lang)} ／ 許可しない: {_labels(refused, lang)}"
    return f"Answer recorded. Allowed: {_labels(chosen, lang)} / Not allowed: {_labels(refused, lang)}"
