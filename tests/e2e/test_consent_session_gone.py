"""A session the broker no longer knows ends on the agent's side at once (issue 12, item 8).

A real broker process is killed and restarted under a live ``request-support`` session with the screen
shared. The broker keeps sessions in memory, so after the restart the agent's resume is answered
with ``not_found``. The agent must stop sharing, tell the subscriber (Japanese first) that the
session has ended, and exit with its documented code, instead of sending frames into the void.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.support import EXIT_SESSION_GONE
from helpdesk import HelpdeskClient
from tests.helpers import BrokerProcess, add_operator, enrolled_agent, login, start_support

pytestmark = pytest.mark.e2e


async def test_request_support_ends_when_the_restarted_broker_does_not_know_the_session(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-GONE")
    alice = add_operator(broker, "alice")
    support = start_support(tmp_path / "agent", "--test-pattern", lang="ja")
    try:
        out = support.wait_for("サポートコード: ")
        code = out.split("サポートコード: ")[1].split()[0]
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, alice)
            session = (await op.claim(code=code, scopes=["screen:view"])).session_id
            support.wait_for("画面を見る")
            support.type("a")
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await op.screen.get()  # the screen is being shared

        # The broker dies (a crash, kill -9: a clean shutdown would end the session and say so)
        # and comes back on the same port and data dir; sessions were in memory only.
        assert broker.proc is not None
        broker.proc.kill()
        broker.proc.wait(15)
        broker.proc = None
        broker.start()
        assert support.proc.wait(60) == EXIT_SESSION_GONE
    finally:
        support.stop()
    out = support.output.text()
    assert "サーバーがこのサポートを把握していないため、サポートは終了しました" in out
    assert "画面の共有と操作はすでに止めています" in out
    assert "not_found" not in out  # no stream of error lines, one clear message
    resumed = [e for e in broker.cli("audit", "log").stdout.splitlines() if "session.agent_back" in e]
    assert resumed == []
