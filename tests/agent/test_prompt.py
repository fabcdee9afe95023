"""The subscriber's prompt: text, answers, reading lines with a timeout, session commands, the Tk dialog."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TextIO

import pytest

from agent.consent import ALL_SCOPES, INVENTORY_SCOPES, scope_label
from agent.prompt import (
    ChatLine,
    DialogUnavailable,
    End,
    Grant,
    Help,
    LineReader,
    Withdraw,
    ask_consent,
    ask_consent_dialog,
    format_consent_prompt,
    gui_available,
    hidden_input,
    parse_consent_answer,
    parse_session_command,
    tk_consent_dialog,
)
from protocol.messages import ConsentRequest
from tests.x11 import xdotool, xvfb

SCOPES = ("screen:view", "input:control", "inventory:os", "inventory:router")


def request(*scopes: str, timeout: float = 60.0, operator: str = "山田 花子") -> ConsentRequest:
    return ConsentRequest(
        id="c1", session_id="sess-00000001", operator=operator, scopes=scopes or SCOPES, timeout=timeout
    )


# -- prompt text -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_prompt_names_operator_and_numbers_every_scope(lang: str) -> None:
    text = format_consent_prompt(request(), lang)
    assert "山田 花子" in text
    for n, scope in enumerate(SCOPES, start=1):
        assert f"{n}. {scope_label(scope, lang)}" in text


def test_prompt_japanese_states_default_deny_timeout_and_besshi5() -> None:
    text = format_consent_prompt(request(timeout=45), "ja")
    assert "画面を見る" in text
    assert "マウスとキーボードを操作する" in text
    assert "情報の取得: オペレーティングシステムの種類、バージョン" in text
    assert "45秒以内に回答がない場合は、すべて拒否します" in text
    assert "承諾しない場合であっても、本サービスの利用には何ら制限はありません" in text
    assert "/withdraw" in text
    assert "/end" in text


def test_prompt_english_states_default_deny_timeout_and_besshi5() -> None:
    text = format_consent_prompt(request(timeout=30), "en")
    assert "View your screen" in text
    assert "Control your mouse and keyboard" in text
    assert "Collect: Operating system type and version" in text
    assert "no answer within 30 seconds means no to everything" in text
    assert "the service is not limited in any way" in text


def test_prompt_without_inventory_does_not_talk_about_inventory() -> None:
    text = format_consent_prompt(request("screen:view"), "ja")
    assert "別紙5" not in text
    assert "1. 画面を見る" in text


def test_prompt_lists_every_item_of_besshi5() -> None:
    text = format_consent_prompt(request(*INVENTORY_SCOPES), "ja")
    for scope in INVENTORY_SCOPES:
        assert scope_label(scope, "ja") in text
    assert "ルータのログインアカウント・パスワードは自動では取得しません" in text


# -- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("a", set(SCOPES)),
        ("ALL", set(SCOPES)),
        ("すべて", set(SCOPES)),
        ("", set()),
        ("   ", set()),
        ("n", set()),
        ("none", set()),
        ("1", {"screen:view"}),
        ("1,3", {"screen:view", "inventory:os"}),
        ("1 3", {"screen:view", "inventory:os"}),
        (" 3 , 1 ", {"screen:view", "inventory:os"}),
        ("１、３", {"screen:view", "inventory:os"}),  # full-width digits and comma
        ("2-4", {"input:control", "inventory:os", "inventory:router"}),
        ("1,1", {"screen:view"}),
        ("0", set()),
        ("5", set()),
        ("1,5", set()),  # one bad number: nothing, never a guess
        ("-1", set()),
        ("y", set()),
        ("yes", set()),
        ("1.3", set()),
        ("3-1", set()),
        ("1" * 50, set()),
    ],
)
def test_parse_consent_answer(answer: str, expected: set[str]) -> None:
    assert parse_consent_answer(answer, SCOPES) == expected


# -- LineReader over a real pipe -------------------------------------------------------------------


class Pipe:
    def __init__(self) -> None:
        read_fd, self.write_fd = os.pipe()
        self.reader_file: TextIO = os.fdopen(read_fd, "r", encoding="utf-8")
        self.closed = False

    def write(self, text: str) -> None:
        os.write(self.write_fd, text.encode("utf-8"))

    def close_writer(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.write_fd)


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    p = Pipe()
    try:
        yield p
    finally:
        p.close_writer()  # the reader thread sees EOF and ends
        await asyncio.sleep(0.05)
        p.reader_file.close()


async def test_line_reader_reads_lines(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.write("first\nsecond line\r\n日本語\n")
    assert await reader.readline(2.0) == "first"
    assert await reader.readline(2.0) == "second line"
    assert await reader.readline(2.0) == "日本語"
    assert not reader.at_eof


async def test_line_reader_timeout_is_not_eof(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    started = time.monotonic()
    assert await reader.readline(0.1) is None
    assert time.monotonic() - started >= 0.09
    assert not reader.at_eof
    pipe.write("late\n")
    assert await reader.readline(2.0) == "late"


async def test_line_reader_reports_eof(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.write("last without newline")
    pipe.close_writer()
    assert await reader.readline(2.0) == "last without newline"
    assert await reader.readline(2.0) is None
    assert reader.at_eof
    assert await reader.readline(None) is None  # and at once from then on
    assert reader.error is None


async def test_line_reader_keeps_at_most_max_line_characters(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file, max_line=10)
    pipe.write("x" * 100 + "\nok\n")
    assert await reader.readline(2.0) == "x" * 10
    assert await reader.readline(2.0) == "ok"


async def test_line_reader_on_a_text_stream() -> None:
    reader = LineReader(io.StringIO("one\ntwo\n"))
    assert await reader.readline(2.0) == "one"
    assert await reader.readline(2.0) == "two"
    assert await reader.readline(2.0) is None
    assert reader.at_eof


# -- ask_consent -----------------------------------------------------------------------------------


async def test_ask_consent_answer_one_grants_only_the_first_scope(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    out = io.StringIO()
    pipe.write("1\n")
    granted = await ask_consent(request(), reader=reader, out=out, lang="ja", now=time.monotonic)
    assert granted == {"screen:view"}
    assert "山田 花子" in out.getvalue()
    assert "1. 画面を見る" in out.getvalue()


async def test_ask_consent_no_answer_before_timeout_is_none(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    out = io.StringIO()
    started = time.monotonic()
    granted = await ask_consent(request(timeout=0.2), reader=reader, out=out, lang="en", now=time.monotonic)
    assert granted is None
    assert 0.15 <= time.monotonic() - started < 2.0
    assert not reader.at_eof


async def test_ask_consent_empty_line_is_an_explicit_no(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.write("\n")
    granted = await ask_consent(request(), reader=reader, out=io.StringIO(), lang="en", now=time.monotonic)
    assert granted == set()


async def test_ask_consent_eof_is_no_answer(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.close_writer()
    granted = await ask_consent(request(), reader=reader, out=io.StringIO(), lang="en", now=time.monotonic)
    assert granted is None
    assert reader.at_eof


# -- session commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["/end", "q", "Q", " /end ", "/終了", "／終了", "/quit"])
def test_end_commands(line: str) -> None:
    assert parse_session_command(line) == End()


@pytest.mark.parametrize(
    ("line", "scopes"),
    [
        ("/withdraw control", {"input:control"}),
        ("/withdraw view", {"screen:view"}),
        ("/withdraw view control", {"screen:view", "input:control"}),
        ("/withdraw all", set(ALL_SCOPES)),
        ("/withdraw inventory", set(INVENTORY_SCOPES)),
        ("/withdraw router", {"inventory:router"}),
        ("/取消 操作", {"input:control"}),
        ("/WITHDRAW Control", {"input:control"}),
    ],
)
def test_withdraw_commands(line: str, scopes: set[str]) -> None:
    assert parse_session_command(line) == Withdraw(frozenset(scopes))


@pytest.mark.parametrize(
    ("line", "scopes"),
    [
        ("/grant control", {"input:control"}),
        ("/grant view", {"screen:view"}),
        ("/grant view,control", {"screen:view", "input:control"}),
        ("/許可 画面", {"screen:view"}),
    ],
)
def test_grant_commands(line: str, scopes: set[str]) -> None:
    assert parse_session_command(line) == Grant(frozenset(scopes))


@pytest.mark.parametrize(
    "line",
    ["/help", "?", "/ヘルプ", "/withdraw", "/withdraw everything", "/grant all", "/grant inventory", "/nope"],
)
def test_help_and_unusable_commands_show_help(line: str) -> None:
    """A mistyped command is never sent to the operator as chat."""
    assert parse_session_command(line) == Help()


@pytest.mark.parametrize("line", ["hello", "画面が固まりました", "q please", "end"])
def test_anything_else_is_chat(line: str) -> None:
    assert parse_session_command(line) == ChatLine(line)


def test_empty_line_is_empty_chat() -> None:
    assert parse_session_command("   ") == ChatLine("")


def test_gui_available_follows_the_display() -> None:
    if sys.platform.startswith("linux"):
        assert not gui_available({})
        assert gui_available({"DISPLAY": ":5"})


def test_dialog_without_a_display_is_unavailable() -> None:
    pytest.importorskip("tkinter")
    with pytest.raises(DialogUnavailable):
        tk_consent_dialog(request(), "ja", 1.0, display=":65000")


# -- the Tk dialog on a virtual X screen -----------------------------------------------------------


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(1024, 768) as d:
        yield d


Rects = Mapping[str, tuple[int, int, int, int]]


class DialogRun:
    """``tk_consent_dialog`` in a worker thread, as the agent runs it; reports the widgets' places."""

    def __init__(self, display: str, req: ConsentRequest, lang: str, timeout: float) -> None:
        self.display = display
        self.rects: queue.Queue[Rects] = queue.Queue()
        self.result: list[set[str] | None] = []
        self.error: list[BaseException] = []
        self.cancel = threading.Event()

        def run() -> None:
            try:
                self.result.append(
                    tk_consent_dialog(
                        req, lang, timeout, display=display, cancel=self.cancel, on_shown=self.rects.put
                    )
                )
            except BaseException as exc:
                self.error.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def shown(self) -> Rects:
        return self.rects.get(timeout=15)

    def click(self, rect: tuple[int, int, int, int]) -> None:
        x, y, w, h = rect
        xdotool(self.display, "mousemove", str(x + min(w // 2, 10)), str(y + h // 2), "click", "1")

    def wait(self, timeout: float = 10.0) -> set[str] | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "dialog did not close"
        assert not self.error, self.error
        return self.result[0]

    def close(self) -> None:
        self.cancel.set()
        self.thread.join(10)


@pytest.mark.x11
def test_dialog_allow_selected_grants_only_the_ticked_box(display: str) -> None:
    run = DialogRun(display, request("screen:view", "input:control", "inventory:os"), "en", 30)
    try:
        rects = run.shown()
        windows = xdotool(display, "search", "--name", "Remote support permission").split()
        assert windows, "the dialog window is not on the screen"
        run.click(rects["input:control"])
        run.click(rects["allow"])
        assert run.wait() == {"input:control"}
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_in_japanese_deny_all(display: str) -> None:
    run = DialogRun(display, request("screen:view", "inventory:router"), "ja", 30)
    try:
        rects = run.shown()
        # xdotool's --name regex is ASCII-only; compare the window names it reports instead.
        assert "リモートサポートの許可" in _window_names(display)
        run.click(rects["screen:view"])  # ticked, then "deny all" anyway
        run.click(rects["deny"])
        assert run.wait() == set()
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_allow_with_nothing_ticked_allows_nothing(display: str) -> None:
    run = DialogRun(display, request("screen:view", "input:control"), "en", 30)
    try:
        rects = run.shown()
        run.click(rects["allow"])
        assert run.wait() == set()
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_times_out_to_none(display: str) -> None:
    run = DialogRun(display, request("screen:view"), "en", 0.5)
    try:
        run.shown()
        started = time.monotonic()
        assert run.wait() is None
        assert time.monotonic() - started < 5
        assert not _search_quietly(display, "Remote support permission")
    finally:
        run.close()


@pytest.mark.x11
async def test_ask_consent_dialog_cancelled_closes_the_window(display: str) -> None:
    task = asyncio.create_task(
        ask_consent_dialog(request("screen:view", timeout=30), lang="en", display=display)
    )
    deadline = time.monotonic() + 15
    while True:
        found = await asyncio.to_thread(
            lambda: _search_quietly(display, "Remote support permission"),
        )
        if found:
            break
        assert time.monotonic() < deadline, "dialog never appeared"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(lambda: _search_quietly(display, "Remote support permission")):
        assert time.monotonic() < deadline, "dialog stayed open after cancel"
        await asyncio.sleep(0.05)


def _window_names(display: str) -> list[str]:
    return [
        xdotool(display, "getwindowname", w).strip()
        for w in xdotool(display, "search", "--name", ".").split()
    ]


def _search_quietly(display: str, name: str) -> bool:
    try:
        return bool(xdotool(display, "search", "--onlyvisible", "--name", name).split())
    except subprocess.CalledProcessError:  # xdotool exits 1 when nothing matches
        return False


# -- the router password is not echoed (a real pseudo-terminal) -----------------------------------


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 4096):
            out += chunk
    return out


async def test_a_secret_typed_into_a_terminal_is_not_echoed_and_echo_comes_back() -> None:
    master, slave = os.openpty()
    tty: TextIO = os.fdopen(slave, "r", encoding="utf-8")
    try:
        reader = LineReader(tty)
        with hidden_input(tty) as hidden:
            assert hidden
            os.write(master, "ルータ-pw1\n".encode())
            assert await reader.readline(2.0) == "ルータ-pw1"
        os.write(master, b"account-name\n")
        assert await reader.readline(2.0) == "account-name"
        screen = _drain(master)
        assert "ルータ-pw1".encode() not in screen  # what the subscriber sees on the terminal
        assert b"account-name" in screen
    finally:
        os.close(master)
        await asyncio.sleep(0.05)
        tty.close()


def test_a_pipe_has_no_echo_to_hide(pipe: Pipe) -> None:
    with hidden_input(pipe.reader_file) as hidden:
        assert not hidden


# -- framing that nobody else's text can imitate (issue 11) ----------------------------------------


def test_question_is_framed_by_separators_and_ends_restating_every_answer() -> None:
    from agent.prompt import SEPARATOR

    lines = format_consent_prompt(request("screen:view", "input:control"), "en").splitlines()
    assert lines[1] == SEPARATOR
    assert lines[-2] == SEPARATOR
    assert lines[-1] == (
        'What your answer allows operator "山田 花子": "1" = View your screen; '
        '"2" = Control your mouse and keyboard; "a" = all of them; just Enter = nothing'
    )


def test_operator_name_is_escaped_in_the_question_and_the_confirmation() -> None:
    from agent.prompt import format_control_confirmation

    evil = request("input:control", operator="\x1b[2J\x1b[1A\u202eEve")
    for text in (format_consent_prompt(evil, "ja"), format_control_confirmation(evil, "ja")):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\\x1b[2J\\x1b[1A\\u202eEve" in text


@pytest.mark.parametrize(
    ("line", "ok"), [("はい", True), ("yes", True), (" Y ", True), ("", False), ("1", False)]
)
def test_only_an_explicit_yes_confirms(line: str, ok: bool) -> None:
    from agent.prompt import is_confirmation

    assert is_confirmation(line) is ok


def test_the_answer_summary_says_what_was_and_was_not_allowed() -> None:
    from agent.prompt import format_answer_summary

    text = format_answer_summary({"screen:view"}, ("screen:view", "input:control"), "ja")
    assert text == "回答を受け付けました。許可: 画面を見る ／ 許可しない: マウスとキーボードを操作する"
