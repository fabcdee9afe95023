"""Issue 13, the agent's second line: a broker that shows the screen to a colleague the subscriber
refused. The real agent (its own process, mutual TLS) answers a question about a person with a
signed receipt naming them; when the (hostile, tests/e2e/hostile.py) broker then lists that
colleague as a viewer anyway, the agent stops sending frames and tells the subscriber, and
resumes once the colleague is gone from the list."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol.messages import ConsentDecision, ConsentRequest, ScreenRefresh, Viewer
from tests.e2e.test_consent_hostile_broker import SESSION, _receipt, _state, _sync, _viewed_session
from tests.e2e.test_consent_hostile_broker import enrolled as enrolled
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

QUIET = 1.5
"""Seconds without a frame that show sharing stopped (the test pattern sends several a second)."""


def test_a_refused_colleague_shown_as_viewer_stops_sharing(enrolled: Path) -> None:
    alice = Viewer(name="Alice", role="operator")
    bob = Viewer(name="Bob", role="operator", read_only=True, account="bob")
    with _viewed_session(enrolled) as (hostile, support):
        hostile.send(
            ConsentRequest(
                id="p1",
                session_id=SESSION,
                operator="Alice",
                scopes=("screen:view",),
                viewer="Bob",
                viewer_account="bob",
                timeout=30,
            )
        )
        support.wait_for("Bob (operator) would like to see your screen. Allow?")
        support.type("")  # Enter: no
        decision = hostile.wait_for(ConsentDecision, count=2)
        assert isinstance(decision, ConsentDecision)
        receipt = _receipt(enrolled / "agent", decision)
        assert (receipt.decision, receipt.viewer, receipt.granted) == (
            "viewer_denied",
            "bob",
            ("screen:view",),
        )
        # The current operator's view is untouched.
        before = hostile.binary_count()
        wait_until(lambda: hostile.binary_count() > before, what="frames after the refusal")

        hostile.send(_state(screen_view="granted", viewers=(alice, bob)))
        support.wait_for("Someone you did not allow (Bob) could see your screen: screen sharing is stopped.")
        _sync(hostile, support, 1)
        hostile.send(ScreenRefresh(session_id=SESSION))  # not honoured either
        time.sleep(0.5)  # frames already on the wire when the state was handled
        stopped = hostile.binary_count()
        time.sleep(QUIET)
        assert hostile.binary_count() == stopped

        hostile.send(_state(screen_view="granted", viewers=(alice,)))
        wait_until(lambda: hostile.binary_count() > stopped, what="frames once Bob is gone")
