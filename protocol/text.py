"""Text from elsewhere, made safe to show: one rule for every string a peer or a user can set.

Chat lines, operator display names, machine names, error messages and audit details all come
from someone else: an operator, a broker, an agent, an admin. Printed raw, such a string can move
the terminal's cursor and erase what is on screen (ANSI CSI), set the window title or a hyperlink
(OSC), ring the bell, reverse the visible order of characters (Unicode bidi overrides, the
"Trojan Source" trick, CVE-2021-42574) or add lines that look like ours. That is how chat could
imitate the consent question (DESIGN §2: no text from anyone else can imitate it).

The rule here makes the whole class impossible rather than filtering known sequences: every
character whose Unicode general category is a control (Cc), a format character (Cf: bidi
overrides and isolates, zero-width joiners), a line or paragraph separator (Zl, Zp), a surrogate
(Cs), private use (Co) or unassigned (Cn) is replaced by a visible escape such as ``\\x1b`` or
``\\u202e``. ESC is a control character, so an escape sequence can never reach the terminal whole;
what follows it is plain text. Newlines are kept only where the caller asks for several lines
(:func:`safe_lines`), and then each line is handed back separately so the caller decides how to
indent or mark it.

The standard library's ``unicodedata`` is the well-kept source of the categories; no third-party
filter knows more than the Unicode database does.
"""

from __future__ import annotations

import unicodedata

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""General categories never shown as they are (see the module docstring)."""

DEFAULT_MAX_CHARS = 2000
"""Longest text shown from one string; more is cut and marked with ``…``."""

_ESCAPES: dict[int, str] = {}


def _escape(ch: str) -> str:
    code = ord(ch)
    cached = _ESCAPES.get(code)
    if cached is None:
        cached = (
            f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
        )
        if len(_ESCAPES) < 4096:
            _ESCAPES[code] = cached
    return cached


def is_unsafe(ch: str) -> bool:
    """True for a character that must not reach a terminal or a label as it is."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def safe_text(text: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """One line of display text: every unsafe character (newlines included) shown as an escape.

    The result contains no control, format or separator character, so it cannot move a cursor,
    start a new line, change colours or reorder what follows it.
    """
    if len(text) > max_chars:
        text = text[:max_chars] + "…"
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if is_unsafe(ch) else ch for ch in text)


def safe_lines(text: str, *, max_chars: int = DEFAULT_MAX_CHARS, max_lines: int = 20) -> list[str]:
    """Several lines of display text (chat): split on newlines, each line made safe.

    ``\\r\\n``, ``\\r`` and ``\\n`` all end a line; every other unsafe character is escaped as in
    :func:`safe_text`. At most ``max_lines`` lines are returned; the last one says more was cut.
    The caller prints each line behind its own marker or indent, so a line can never start at
    the left margin where our own prompts do.
    """
    if len(text) > max_chars:
        text = text[:max_chars] + "…"
    lines = [
        safe_text(line, max_chars=max_chars)
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], "…"]
    return lines
