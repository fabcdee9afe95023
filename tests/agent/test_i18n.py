"""Subscriber-facing text: language detection, both languages for every message, error fallbacks."""

from __future__ import annotations

import re
import string

import pytest

from agent.i18n import MESSAGES, detect_lang, error_text, t


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("ja", {"LANG": "en_US.UTF-8"}, "ja"),
        ("JA_jp", {}, "ja"),
        ("en", {"LC_ALL": "ja_JP.UTF-8"}, "en"),
        ("fr", {"LANG": "ja_JP.UTF-8"}, "en"),
        (None, {"LC_ALL": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, "ja"),
        (None, {"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, "en"),  # LC_ALL wins
        (None, {"LC_ALL": "", "LANG": "ja_JP.UTF-8"}, "ja"),  # empty means unset
        (None, {"LC_MESSAGES": "ja_JP.eucJP", "LANG": "en_GB"}, "ja"),
        (None, {"LANG": "ja_JP.UTF-8"}, "ja"),
        (None, {"LANG": "en_US.UTF-8"}, "en"),
        (None, {"LANG": "C.UTF-8"}, "en"),
        (None, {}, "en"),
        ("", {"LANG": "ja_JP.UTF-8"}, "ja"),  # an empty --lang is no choice
    ],
)
def test_detect_lang(explicit: str | None, env: dict[str, str], expected: str) -> None:
    assert detect_lang(explicit, env) == expected


def test_detect_lang_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    assert detect_lang() == "ja"
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")
    assert detect_lang() == "en"


_JAPANESE = re.compile("[\u3040-\u30ff\u3400-\u9fff\uff01-\uff60]")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_both_languages_with_the_same_placeholders(key: str) -> None:
    ja, en = MESSAGES[key]
    assert ja.strip()
    assert en.strip()
    assert _fields(ja) == _fields(en)
    # (Japanese, English) order: the English text has no Japanese; the Japanese text has some,
    # unless the entry is a pure template such as "[{sender}] {text}".
    assert not _JAPANESE.search(en)
    assert _JAPANESE.search(ja) or ja == en


@pytest.mark.parametrize("key", sorted(MESSAGES))
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_message_formats(key: str, lang: str) -> None:
    values = dict.fromkeys(_fields(MESSAGES[key][0]), 1.5)
    text = t(key, lang, **values)
    assert "{" not in text
    assert text == MESSAGES[key][0 if lang == "ja" else 1].format(**values)


def test_t_fills_placeholders() -> None:
    assert t("run.disconnected", "en", delay=2.25) == "Disconnected. Reconnecting in 2.2 s."
    assert t("run.disconnected", "ja", delay=2.25).startswith("接続が切れました。2.2 秒後")


def test_t_unknown_language_is_english() -> None:
    assert t("run.connected", "fr") == "Connected to the broker."


def test_error_text_known_code() -> None:
    assert error_text("token_used", "ja") == "この登録用トークンは既に使用されています。"
    assert error_text("token_used", "en") == "This enrollment token was already used."


@pytest.mark.parametrize(
    "code",
    [
        "token_unknown",
        "token_used",
        "token_expired",
        "bad_csr",
        "csr_subject_mismatch",
        "cert_revoked",
        "cert_unknown",
        "subscriber_terminated",
        "subscriber_suspended",
    ],
)
def test_error_codes_an_agent_can_meet_are_translated(code: str) -> None:
    assert f"error.{code}" in MESSAGES
    assert error_text(code, "ja") != code


def test_error_text_fallback() -> None:
    assert error_text("no_such_code", "ja", fallback="broker said no") == "broker said no"
    assert error_text("no_such_code", "en") == "no_such_code"
