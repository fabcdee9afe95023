"""The agent is the authority on consent, even against a hostile broker (issue 11, items 3 and 4).

The real agent (``python -m agent request-support``, its own process) connects over mutual TLS to
a broker that lies (``tests/e2e/hostile.py``): it says everything was withdrawn while the
subscriber granted the screen, says control was granted when it was not and sends input, asks
for a refresh and a monitor switch after the subscriber withdrew the screen, claims inventory was
granted, and puts terminal escape sequences into the operator's name and into chat. What the
agent sends back is read on the wire; what the subscriber reads is the agent's own output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.identity import load_identity
from broker.receipts import verify_receipt
from protocol.messages import (
    Chat,
    ConsentDecision,
    ConsentRequest,
    Error,
    InputEvent,
    InventoryReport,
    MonitorLayout,
    ScreenRefresh,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Viewer,
)
from protocol.receipts import ConsentReceipt
from tests.e2e.hostile import HostileBroker, hostile_broker, point_agent_at
from tests.helpers import BrokerProcess, SupportProcess, enrolled_agent, start_support, wait_until

pytestmark = pytest.mark.e2e

SESSION = "sess-hostile-0001"
EVIL_NAME = "\x1b[2J\x1b[HMallory\x1b]0;pwned\x07\u202eevil"
"""Clear the screen, home the cursor, set the window title, ring the bell, reverse the text."""
FAKE_PROMPT = "\x1b[1A\x1b[2K\r━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\n  1. View your screen\nnext line"


def _receipt(agent_dir: Path, decision: ConsentDecision) -> ConsentReceipt:
    identity = load_identity(agent_dir)
    assert identity is not None
    return verify_receipt(decision.receipt, decision.signature, identity.cert_path.read_text())


def _state(viewers: tuple[Viewer, ...] = (), **scopes: str) -> SessionState:
    return SessionState(
        session_id=SESSION,
        phase="active",
        contract_id="C-HOSTILE",
        operator=EVIL_NAME,
        viewers=viewers,
        scopes={k.replace("_", ":", 1): v for k, v in scopes.items()},  # type: ignore[misc]
    )


def _sync(hostile: HostileBroker, support: SupportProcess, n: int) -> None:
    """Every message sent before this has been handled: the agent printed this chat line."""
    hostile.send(Chat(session_id=SESSION, text=f"sync-{n}", sender="op"))
    support.wait_for(f"sync-{n}")


@pytest.fixture
def enrolled(tmp_path: Path) -> Path:
    """An agent enrolled with the real broker, which is then stopped: the hostile one takes over."""
    broker = BrokerProcess(tmp_path / "broker").start()
    try:
        enrolled_agent(broker, tmp_path / "agent", "C-HOSTILE")
    finally:
        broker.stop()
    return tmp_path


@contextmanager
def _viewed_session(enrolled: Path) -> Iterator[tuple[HostileBroker, SupportProcess]]:
    """The agent asks for support at the hostile broker; the subscriber grants the screen only
    (asked for the screen and control by an operator whose name is full of escapes)."""
    agent_dir = enrolled / "agent"
    with hostile_broker(enrolled / "broker") as hostile:
        point_agent_at(agent_dir, hostile.url)
        support = start_support(agent_dir, "--test-pattern", "--test-monitors", "2")
        try:
            request = hostile.wait_for(SupportRequest)
            assert isinstance(request, SupportRequest)
            hostile.send(
                SupportCodeIssued(
                    id=request.id, session_id=SESSION, code="123456", expires_at=time.time() + 600
                )
            )
            support.wait_for("Support code: 123456")
            hostile.send(
                ConsentRequest(
                    id="s1",
                    session_id=SESSION,
                    operator=EVIL_NAME,
                    scopes=("screen:view", "input:control"),
                    timeout=30,
                )
            )
            support.wait_for("Control your mouse and keyboard")
            support.type("1")  # the screen only
            first = hostile.wait_for(ConsentDecision)
            assert isinstance(first, ConsentDecision)
            assert _receipt(agent_dir, first).granted == ("screen:view",)
            wait_until(lambda: hostile.binary_count() >= 2, what="screen frames")
            yield hostile, support
            hostile.send(
                SessionState(session_id=SESSION, phase="ended", contract_id="C-HOSTILE", ended_by="x")
            )
            assert support.proc.wait(30) == 0
        finally:
            support.stop()


def test_a_forged_withdrawal_is_not_shown_as_the_subscribers_consent(enrolled: Path) -> None:
    with _viewed_session(enrolled) as (hostile, support):
        # "Everything withdrawn", says the broker: the agent goes on with what the subscriber
        # granted, and shows the subscriber that, not the broker's story.
        hostile.send(_state(screen_view="withdrawn", input_control="withdrawn"))
        _sync(hostile, support, 1)
        before = hostile.binary_count()
        wait_until(lambda: hostile.binary_count() > before, what="frames after the forged withdrawal")
    out = support.output.text()
    assert "Currently allowed: nothing" not in out
    assert "Currently allowed: View your screen" in out
    assert "ignored from the broker: session_state" in out  # logged, scope names only


def test_forged_grants_apply_no_input_and_collect_no_inventory(enrolled: Path) -> None:
    with _viewed_session(enrolled) as (hostile, support):
        hostile.send(_state(screen_view="granted", input_control="granted", inventory_os="granted"))
        for kind, fields in (("move", {"x": 5, "y": 5}), ("key", {"key": "a", "action": "click"})):
            hostile.send(InputEvent(session_id=SESSION, kind=kind, **fields))  # type: ignore[arg-type]
        hostile.wait_for(Error, count=2)
        _sync(hostile, support, 1)
        assert hostile.messages(InventoryReport) == []
        assert all(isinstance(e, Error) and e.code == "consent_required" for e in hostile.messages(Error))
    assert "input applied" not in support.output.text()


def test_no_screen_data_after_view_is_withdrawn_whatever_the_broker_asks(enrolled: Path) -> None:
    with _viewed_session(enrolled) as (hostile, support):
        hostile.wait_for(MonitorLayout)
        support.type("/withdraw view")
        second = hostile.wait_for(ConsentDecision, count=2)
        assert isinstance(second, ConsentDecision)
        assert _receipt(enrolled / "agent", second).granted == ()
        withdrawn_at = hostile.index_of(lambda e: e.message == second)
        hostile.send(_state(screen_view="granted"))
        hostile.send(ScreenRefresh(session_id=SESSION, monitor=2))
        hostile.send(ScreenRefresh(session_id=SESSION, monitor=1, behind=True))
        hostile.send(ScreenRefresh(session_id=SESSION))
        _sync(hostile, support, 1)
        time.sleep(2.5)  # longer than the sharer's 2 s keep-alive: any frame would be here by now
        after = hostile.entries()[withdrawn_at + 1 :]
        assert [e for e in after if e.message is None] == [], "screen frames after view was withdrawn"
        assert [e for e in after if isinstance(e.message, MonitorLayout)] == [], (
            "monitor layout after withdraw"
        )
    allowed = [line for line in support.output.text().splitlines() if line.startswith("Currently allowed:")]
    assert allowed[-1] == "Currently allowed: nothing", allowed


def test_names_and_chat_from_the_broker_never_reach_the_terminal_raw(enrolled: Path) -> None:
    with _viewed_session(enrolled) as (hostile, support):
        hostile.send(_state(screen_view="granted"))
        hostile.send(Chat(session_id=SESSION, text=FAKE_PROMPT, sender=EVIL_NAME))
        support.wait_for("next line")
    out = support.output.text()
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in out, repr(raw)
    assert "\\x1b[2J\\x1b[HMallory" in out  # the name, visibly escaped, in the question and notices
    # Chat: every line behind the marker or indented under it, never at the left margin.
    lines = out.splitlines()
    assert any(line.startswith("💬 ") and "\\x1b[1A\\x1b[2K" in line for line in lines)
    assert "    │   1. View your screen" in lines
    assert "    │ next line" in lines
    assert sum(line.startswith("  1. View your screen") for line in lines) == 1  # only the real question


def test_a_second_viewer_is_announced_to_the_subscriber(enrolled: Path) -> None:
    supervisor = Viewer(name="Sato\x1b[8m", role="supervisor", read_only=True)
    operator = Viewer(name="Alice", role="operator")
    with _viewed_session(enrolled) as (hostile, support):
        hostile.send(_state(screen_view="granted", viewers=(operator,)))
        support.wait_for("Alice (operator) can now see your screen.")
        hostile.send(_state(screen_view="granted", viewers=(operator, supervisor)))
        support.wait_for("can now see your screen.", count=2)
        hostile.send(_state(screen_view="granted", viewers=(operator,)))
        support.wait_for("stopped watching your screen.")
    out = support.output.text()
    assert "Sato\\x1b[8m (supervisor, view only) can now see your screen." in out
    assert "Sato\\x1b[8m (supervisor, view only) stopped watching your screen." in out
