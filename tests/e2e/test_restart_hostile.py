"""A broker that asks for a restart the subscriber did not allow gets nothing (issue 16).

The agent is the authority on consent (DESIGN §2): a ``restart_request`` is acted on only when the
agent's own record grants ``system:restart``, whatever the broker claims. The real agent process
talks to the lying broker of ``tests/e2e/hostile.py``; its restart command is a script that would
leave a marker file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from agent.resume import RESUME_FILE
from protocol.messages import (
    Chat,
    ConsentDecision,
    ConsentRequest,
    Error,
    RestartNotice,
    RestartRequest,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
)
from tests.e2e.hostile import hostile_broker, point_agent_at
from tests.helpers import BrokerProcess, child_env, enrolled_agent, start_support

pytestmark = pytest.mark.e2e

SESSION = "sess-restart-0001"


def test_a_restart_request_without_the_subscribers_consent_restarts_nothing(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker").start()
    try:
        enrolled_agent(broker, tmp_path / "agent", "C-HOSTILE")
    finally:
        broker.stop()
    agent_dir = tmp_path / "agent"
    marker = tmp_path / "rebooted"
    script = tmp_path / "reboot.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('rebooted')\n")
    env = child_env(ISP_AGENT_REBOOT_COMMAND=f"{sys.executable} {script}")
    with hostile_broker(tmp_path / "broker") as hostile:
        point_agent_at(agent_dir, hostile.url)
        support = start_support(agent_dir, "--test-pattern", env=env)
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
                    id="s1", session_id=SESSION, operator="Op", scopes=("screen:view", "system:restart")
                )
            )
            out = support.wait_for("Restart your computer")
            assert "unsaved work is lost" in out
            support.type("1")  # the screen only: no restart
            hostile.wait_for(ConsentDecision)
            # The broker says the restart was granted and asks for it anyway.
            hostile.send(
                SessionState(
                    session_id=SESSION,
                    phase="active",
                    contract_id="C-HOSTILE",
                    operator="Op",
                    scopes={"screen:view": "granted", "system:restart": "granted"},
                )
            )
            hostile.send(RestartRequest(id="r1", session_id=SESSION))
            error = hostile.wait_for(Error)
            assert isinstance(error, Error)
            assert error.code == "consent_required"
            hostile.send(Chat(session_id=SESSION, text="sync-1", sender="op"))
            support.wait_for("sync-1")
            assert hostile.messages(RestartNotice) == []
            assert not marker.exists()
            assert not (agent_dir / RESUME_FILE).exists()
            assert support.proc.poll() is None  # still running, nothing restarted
            hostile.send(
                SessionState(session_id=SESSION, phase="ended", contract_id="C-HOSTILE", ended_by="x")
            )
            assert support.proc.wait(30) == 0
        finally:
            support.stop()
    assert "ignored from the broker: restart_request" in support.output.text()
