"""The agent's own consent record: the only thing that decides what a broker message may do."""

from __future__ import annotations

import pytest

from agent.consent_record import AGENT_CHECKED_KINDS, ConsentRecord
from protocol.messages import ConsentRequest, SessionState
from protocol.session import REQUIREMENTS

SID = "sess-00000001"


def _record(*granted: str) -> ConsentRecord:
    record = ConsentRecord(session_id=SID, serial="ab12")
    if granted:
        request = ConsentRequest(id="c1", session_id=SID, operator="op", scopes=granted)
        record.answer(request, granted, 1.0)
    return record


def _state(phase: str = "active", **scopes: str) -> SessionState:
    return SessionState(
        session_id=SID,
        phase=phase,  # type: ignore[arg-type]
        contract_id="C-1",
        scopes={k.replace("_", ":", 1): v for k, v in scopes.items()},  # type: ignore[misc]
    )


def test_every_checked_kind_is_in_the_protocol_table() -> None:
    assert set(REQUIREMENTS) >= AGENT_CHECKED_KINDS


@pytest.mark.parametrize(
    ("granted", "kind", "allowed"),
    [
        ((), "input", False),
        (("screen:view",), "input", False),
        (("input:control",), "input", True),
        ((), "screen_refresh", False),
        (("input:control",), "monitor_layout", False),
        (("screen:view",), "monitor_layout", True),
        (("screen:view",), "screen_update", True),
        ((), "chat", True),
        (("screen:view", "input:control"), "no_such_kind", False),
    ],
)
def test_permits_follows_the_record_and_the_protocol_table(
    granted: tuple[str, ...], kind: str, allowed: bool
) -> None:
    assert _record(*granted).permits(kind) is allowed


def test_nothing_is_permitted_after_the_end() -> None:
    record = _record("screen:view", "input:control", "inventory:os")
    record.end(2.0)
    assert not record.permits("input")
    assert not record.permits("screen_update")
    assert not record.permits_item("os")


def test_a_broker_state_changes_nothing_and_its_contradictions_are_named() -> None:
    record = _record("screen:view")
    forged = _state(screen_view="withdrawn", input_control="granted", inventory_os="requested")
    assert record.disagreements(forged) == ("screen:view", "input:control")
    assert record.granted == {"screen:view"}
    assert record.permits("screen_update")
    assert not record.permits("input")
    assert record.disagreements(_state(screen_view="granted")) == ()
    assert record.disagreements(_state("ended")) == ()
