"""The one table of who may send which message in which phase (protocol.session)."""

from __future__ import annotations

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.session import (
    CONTROL,
    REQUIREMENTS,
    SCREEN,
    SENDERS,
    NotAllowed,
    Phase,
    Role,
    check_sender,
)

ALL = frozenset({SCREEN, CONTROL, "inventory:os"})

CHANGES_THE_PC = ("input", "monitor_switch", "scope_request", "reveal_credentials", "chat")


def test_every_message_kind_has_its_senders_and_its_phases() -> None:
    assert set(SENDERS) == set(REQUIREMENTS)
    assert all(SENDERS.values())


@pytest.mark.parametrize("kind", CHANGES_THE_PC)
def test_a_viewer_may_send_nothing_that_changes_the_pc(kind: str) -> None:
    with pytest.raises(NotAllowed) as caught:
        check_sender(Role.VIEWER, kind, Phase.ACTIVE, ALL)
    assert caught.value.code is ErrorCode.NOT_ALLOWED


def test_a_viewer_may_watch_ask_for_a_keyframe_and_end() -> None:
    check_sender(Role.VIEWER, "watch", Phase.ACTIVE, frozenset())
    check_sender(Role.VIEWER, "screen_refresh", Phase.ACTIVE, frozenset({SCREEN}))
    check_sender(Role.VIEWER, "session_end", Phase.ACTIVE, frozenset())
    assert {k for k, roles in SENDERS.items() if Role.VIEWER in roles} == {
        "watch",
        "screen_refresh",
        "session_end",
    }


@pytest.mark.parametrize("kind", ["screen_update", "monitor_layout", "inventory_report", "consent_decision"])
def test_only_the_agent_sends_what_comes_from_the_pc(kind: str) -> None:
    for role in (Role.OPERATOR, Role.VIEWER):
        with pytest.raises(NotAllowed):
            check_sender(role, kind, Phase.ACTIVE, ALL)
    check_sender(Role.AGENT, kind, Phase.ACTIVE, ALL)


def test_the_operator_still_needs_phase_and_consent() -> None:
    check_sender(Role.OPERATOR, "input", Phase.ACTIVE, frozenset({CONTROL}))
    with pytest.raises(ProtocolError) as caught:
        check_sender(Role.OPERATOR, "input", Phase.ACTIVE, frozenset({SCREEN}))
    assert caught.value.code is ErrorCode.CONSENT_REQUIRED
    with pytest.raises(ProtocolError) as caught:
        check_sender(Role.OPERATOR, "monitor_switch", Phase.CONSENT, ALL)
    assert caught.value.code is ErrorCode.UNEXPECTED_MESSAGE


def test_an_unknown_kind_is_not_allowed() -> None:
    with pytest.raises(NotAllowed):
        check_sender(Role.OPERATOR, "format_disk", Phase.ACTIVE, ALL)
