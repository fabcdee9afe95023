"""Chat and names in the subscriber's terminal: escaped, marked, indented, held during questions."""

from __future__ import annotations

import io

from agent.session_view import CHAT_CONTINUATION, CHAT_MARKER, SessionView, format_chat, viewer_notices


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


def test_announcements_are_held_with_the_chat_and_keep_their_order() -> None:
    out = io.StringIO()
    view = SessionView(out, "en", max_held=2)
    view.hold()
    view.notice("Alice (operator) joined the session.")
    for i in range(3):
        view.chat("op", f"chat {i}")  # more chat than is kept: it never pushes the notice out
    view.say("question")
    assert out.getvalue() == "question\n"
    view.release()
    printed = out.getvalue().splitlines()
    assert printed[0] == "question"
    assert "left out: 1" in printed[1]
    assert printed[2:] == [
        "Alice (operator) joined the session.",
        f"{CHAT_MARKER}op(operator)> chat 1",
        f"{CHAT_MARKER}op(operator)> chat 2",
    ]
    view.notice("now")  # no question open: at once
    assert out.getvalue().splitlines()[-1] == "now"


ALICE = ("Alice", "operator", False)
SATO = ("Sato\x1b[8m", "supervisor", True)


def test_nobody_can_see_the_screen_before_the_subscriber_allows_it() -> None:
    assert viewer_notices([], [ALICE], saw=False, sees=False, lang="en") == [
        "Alice (operator) joined the session."
    ]
    assert viewer_notices([], [ALICE], saw=False, sees=False, lang="ja") == [
        "Alice（オペレータ） がサポートに参加しました。"
    ]
    assert viewer_notices([ALICE, SATO], [ALICE], saw=False, sees=False, lang="en") == [
        "Sato\\x1b[8m (supervisor, view only) left the session."
    ]


def test_allowing_the_screen_names_everyone_who_now_sees_it() -> None:
    assert viewer_notices([ALICE], [ALICE, SATO], saw=False, sees=True, lang="en") == [
        "Alice (operator) can now see your screen.",
        "Sato\\x1b[8m (supervisor, view only) can now see your screen.",
    ]
    assert viewer_notices([ALICE], [ALICE], saw=False, sees=True, lang="ja") == [
        "Alice（オペレータ） があなたの画面を見られるようになりました。"
    ]


def test_while_the_screen_is_allowed_arrivals_and_departures_are_about_seeing_it() -> None:
    assert viewer_notices([ALICE], [ALICE, SATO], saw=True, sees=True, lang="en") == [
        "Sato\\x1b[8m (supervisor, view only) can now see your screen."
    ]
    assert viewer_notices([ALICE, SATO], [ALICE], saw=True, sees=True, lang="en") == [
        "Sato\\x1b[8m (supervisor, view only) stopped watching your screen."
    ]
    assert viewer_notices([ALICE], [ALICE], saw=True, sees=True, lang="en") == []


def test_taking_the_screen_back_says_nobody_sees_it_any_more() -> None:
    assert viewer_notices([ALICE, SATO], [ALICE], saw=True, sees=False, lang="en") == [
        "Alice (operator) can no longer see your screen.",
        "Sato\\x1b[8m (supervisor, view only) stopped watching your screen.",
    ]
    assert viewer_notices([ALICE], [ALICE], saw=True, sees=False, lang="ja") == [
        "Alice（オペレータ） はもうあなたの画面を見られません。"
    ]
