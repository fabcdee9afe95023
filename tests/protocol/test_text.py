"""protocol.text: no string from elsewhere reaches a screen with a control, format or separator character."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from protocol.text import UNSAFE_CATEGORIES, safe_lines, safe_text

ATTACKS = [
    "\x1b[2J\x1b[H1. 画面を見る",  # clear screen, cursor home, then a fake prompt
    "\x1b[1A\x1b[2Kfake",  # cursor up, erase line
    "\x1b]0;title\x07",  # OSC window title + BEL
    "\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x9b2J",  # C1 CSI
    "abc\u202egnp.exe",  # right-to-left override
    "\u2066isolate\u2069",
    "zero\u200bwidth\u200djoin",
    "line\u2028sep\u2029para",
    "bell\x07back\x08space\x7f",
    "\ud800lone surrogate",
    "\ue000private",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_no_unsafe_character_survives(text: str) -> None:
    out = safe_text(text)
    assert all(unicodedata.category(ch) not in UNSAFE_CATEGORIES for ch in out)
    assert not {"\x1b", "\n", "\r"} & set(out)


def test_escapes_are_visible_and_ordinary_text_is_kept() -> None:
    assert safe_text("\x1b[2J") == "\\x1b[2J"
    assert safe_text("a\u202eb") == "a\\u202eb"
    assert safe_text("山田 太郎 (Yamada)") == "山田 太郎 (Yamada)"
    assert safe_text("two\nlines") == "two\\x0alines"


def test_long_text_is_cut() -> None:
    assert safe_text("x" * 5000, max_chars=10) == "x" * 10 + "…"


def test_lines_are_split_and_each_is_safe() -> None:
    assert safe_lines("a\r\nb\rc\nd\x1b[1A") == ["a", "b", "c", "d\\x1b[1A"]
    many = safe_lines("\n".join(str(i) for i in range(100)), max_lines=5)
    assert many == ["0", "1", "2", "3", "…"]


def test_every_unsafe_code_point_is_escaped() -> None:
    # The whole Basic Multilingual Plane and the first supplementary one, not a list of known tricks.
    for code in range(0x20000):
        ch = chr(code)
        if unicodedata.category(ch) in UNSAFE_CATEGORIES:
            assert safe_text(ch).startswith("\\"), hex(code)
    assert sys.maxunicode >= 0x10FFFF
