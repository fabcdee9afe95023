"""What the subscriber types during a session: ``/end``, ``/withdraw``, ``/grant``, ``/help``, or chat."""

from __future__ import annotations

import pytest

from agent.consent import ALL_SCOPES, INVENTORY_SCOPES
from agent.session_commands import (
    ChatLine,
    End,
    Grant,
    Help,
    Withdraw,
    parse_session_command,
)

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
