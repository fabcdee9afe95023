"""Every stable error code has words for people in both languages, in the agent and in the console,
so a new ``ErrorCode`` member cannot ship as a bare code again (``storage_unavailable`` and
``unexpected_message`` did, issue 12)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agent.errors import AgentErrorCode, ConnectionRefusedByBroker, EnrollRefused
from agent.i18n import MESSAGES, error_text
from protocol.errors import ErrorCode

STATIC_JS = Path(__file__).resolve().parents[2] / "broker" / "static" / "js"
CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _js_table(lang: str) -> dict[str, str]:
    text = (STATIC_JS / f"strings-{lang}.js").read_text(encoding="utf-8")
    block = text.split(f"export const {lang} = {{", 1)[1].split("\n};", 1)[0]
    return dict(re.findall(r'^\s*"([a-z_.:]+)":\s*"((?:[^"\\]|\\.)*)",?\s*$', block, re.MULTILINE))


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_agent_has_japanese_and_english_for_every_error_code(code: ErrorCode) -> None:
    ja, en = MESSAGES[f"error.{code.value}"]
    assert CJK.search(ja), ja
    assert en.strip(), code
    assert not CJK.search(en), en
    assert error_text(code.value, "ja") == ja
    assert error_text(code.value, "en") == en


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_console_has_japanese_and_english_for_every_error_code(code: ErrorCode) -> None:
    ja, en = _js_table("ja"), _js_table("en")
    key = f"error.{code.value}"
    assert CJK.search(ja[key]), key
    assert en[key].strip(), key
    assert not CJK.search(en[key]), key


def test_enrollment_words_come_from_the_table_not_the_code() -> None:
    """agent/enroll.py holds no subscriber-facing text of its own (it was a hard-coded bilingual
    string for ``storage_unavailable``)."""
    source = (Path(__file__).resolve().parents[2] / "agent" / "enroll.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    texts = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    assert not [text for text in texts if CJK.search(text)]
    assert "記録装置の障害" in error_text("storage_unavailable", "ja")
    assert "could not save the enrollment" in error_text("storage_unavailable", "en")


@pytest.mark.parametrize("code", list(AgentErrorCode), ids=lambda c: c.value)
def test_agent_has_japanese_and_english_for_every_agent_code(code: AgentErrorCode) -> None:
    """The agent's own codes are a closed set too (issue 14: they were free strings), shown with
    the same table as the wire's codes."""
    ja, en = MESSAGES[f"error.{code.value}"]
    assert CJK.search(ja), ja
    assert en.strip(), code
    assert not CJK.search(en), en
    assert error_text(code.value, "ja") == ja
    assert error_text(code.value, "en") == en


def test_agent_codes_never_reuse_a_wire_code() -> None:
    """A code means one thing: the agent's own set and the protocol's do not overlap."""
    assert not {c.value for c in AgentErrorCode} & {c.value for c in ErrorCode}


def test_a_broker_refusal_keeps_a_code_from_the_closed_set() -> None:
    """A refusal from the broker carries its ``ErrorCode``; one this agent does not know (a newer
    broker) becomes ``internal``, which has words, instead of a free string."""
    assert EnrollRefused("token_used", "used").code is ErrorCode.TOKEN_USED
    assert ConnectionRefusedByBroker("cert_revoked", "revoked").code is ErrorCode.CERT_REVOKED
    unknown = ConnectionRefusedByBroker("some_future_code", "?")
    assert unknown.code is ErrorCode.INTERNAL
    assert error_text(unknown.code, "ja") == MESSAGES["error.internal"][0]
