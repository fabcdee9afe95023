"""Chat and names in the subscriber's terminal: escaped, marked, indented, held during questions."""

from __future__ import annotations

import io

from agent.session_view import CHAT_CONTINUATION, CHAT_MARKER, SessionView, format_chat


def test_chat_is_marked_escaped_and_indented() -> None:
    lines = format_chat("山田\x1b[31m", "\x1b[1A\x1b[2K1. 画面を見る\n\u202eline two", "ja")
    assert lines[0] == f"{CHAT_MARKER}山田\\x1b[31m(オペレータ)> \\x1b[1A\\x1b[2K1. 画面を見る"
    assert lines[1] == f"{CHAT_CONTINUATION}\\u202eline two"
    assert all("\x1b" not in line and "\u202e" not in line for line in lines)


def test_chat_is_held_while_a_question_is_open_and_printed_after() -> None:
    out = io.StringIO()
    view = SessionView(out, "en", max_held=2)
    view.hold()
    view.chat("op", "one")
    view.say("question")
    view.chat("op", "two\nthree")
    assert out.getvalue() == "question\n"
    view.release()
    printed = out.getvalue().splitlines()
    assert printed[0] == "question"
    assert "left out: 1" in printed[1]
    assert printed[2:] == [f"{CHAT_MARKER}op(operator)> two", f"{CHAT_CONTINUATION}three"]
