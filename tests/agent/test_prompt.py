"""The subscriber's consent prompt in the terminal: its text, the answers, ``ask_consent``, and the
framing nobody else's text can imitate.
"""

from __future__ import annotations

import io
import time

import pytest

from agent.consent import INVENTORY_SCOPES, scope_label
from agent.prompt import (
    LineReader,
    ask_consent,
    format_consent_prompt,
    parse_consent_answer,
)
from tests.agent.prompting import SCOPES, Pipe, request

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
