"""Restart of the subscriber's PC at the operator's request, and the session after it (issue 16).

Real broker, real agent processes, real TLS. The OS restart is the one thing replaced: the
agent's restart command (``ISP_AGENT_REBOOT_COMMAND``) is a script that does what a reboot does to
the agent — it sends SIGTERM to the support process and to the service (``agent run``), as
systemd does at shutdown — and the test then starts both again, as the service manager at boot
and the login (the desktop window) would. The broker runs with a short normal grace (2 s) and a
long restart grace, so the session surviving the restart proves the announced grace is used.
"""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest

from agent.resume import RESUME_FILE
from helpdesk import HelpdeskClient
from protocol.messages import SessionState
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import (
    BrokerProcess,
    OperatorAccount,
    SupportProcess,
    add_operator,
    child_env,
    enrolled_agent,
    login,
    start_agent,
    start_support,
    wait_until,
)

pytestmark = pytest.mark.e2e

NORMAL_GRACE = 2.0
RESUME_QUESTION = "続けますか？"

REBOOT_SCRIPT = """\
import os, pathlib, signal, sys
marker, data_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
pids = [os.getppid()]  # the agent that asked for the restart
try:
    pids.append(int((data_dir / "run.lock").read_text().strip()))  # the service (agent run)
except (OSError, ValueError):
    pass
marker.write_text(" ".join(map(str, pids)))
for pid in pids:
    os.kill(pid, signal.SIGTERM)  # what the OS does to every process at shutdown
"""


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = BrokerProcess(
        tmp_path / "broker",
        extra_args=(
            *ALWAYS_OPEN,
            "--consent-timeout",
            "20",
            "--grace",
            str(NORMAL_GRACE),
            "--restart-grace",
            "120",
        ),
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _code(support: SupportProcess) -> str:
    out = support.wait_for("サポートコード: ")
    return out.split("サポートコード: ")[1].split()[0]


async def _restart_granted_session(
    broker: BrokerProcess, tmp_path: Path, op: HelpdeskClient, alice: OperatorAccount
) -> tuple[str, Path, Path]:
    """Everything up to the "reboot": returns the session id, the agent's data dir and the marker."""
    data_dir = tmp_path / "agent"
    enrolled_agent(broker, data_dir, "C-RESTART")
    script = tmp_path / "reboot.py"
    script.write_text(REBOOT_SCRIPT)
    marker = tmp_path / "rebooted"
    env = child_env(ISP_AGENT_REBOOT_COMMAND=f"{sys.executable} {script} {marker} {data_dir}")
    service = start_agent(data_dir, lang="ja")
    wait_until(lambda: (data_dir / "run.lock").exists(), what="the service to hold its lock")
    support = start_support(data_dir, "--test-pattern", lang="ja", env=env)
    code = _code(support)
    await login(op, alice)
    session = (await op.claim(code=code, scopes=["screen:view", "system:restart"])).session_id
    out = support.wait_for("パソコンの再起動")
    assert "保存していない作業は消えます" in out  # the subscriber is told what a restart costs
    support.type("a")
    await op.watch(session)
    await op.wait_state(
        session,
        lambda s: s.scopes.get("screen:view") == "granted" and s.scopes.get("system:restart") == "granted",
    )
    await op.restart(session)
    state = await op.wait_state(session, lambda s: s.restart_until is not None)
    assert state.phase == "active"
    # The agent withdrew everything before it went: nothing carries over the restart.
    await op.wait_state(session, lambda s: "granted" not in s.scopes.values())
    assert support.proc.wait(30) is not None
    assert service.proc.wait(30) is not None
    assert marker.exists()
    assert "再起動します" in support.output.text()
    record = data_dir / RESUME_FILE
    assert record.exists()
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert session in record.read_text()
    return session, data_dir, marker


async def _no_end_within(op: HelpdeskClient, session: str, seconds: float) -> None:
    """Longer than the normal grace passes with the agent away, and the session is not ended."""
    with pytest.raises(TimeoutError):
        await op.wait_state(session, lambda s: s.phase == "ended", timeout=seconds)


async def test_the_session_continues_after_the_restart_once_the_subscriber_confirms(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    alice = add_operator(broker, "alice")
    async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
        session, data_dir, _ = await _restart_granted_session(broker, tmp_path, op, alice)
        await _no_end_within(op, session, NORMAL_GRACE * 2)
        # "Boot": the service comes back, and the login starts the subscriber's agent again.
        service = start_agent(data_dir, lang="ja")
        support = start_support(data_dir, "--test-pattern", lang="ja")
        try:
            out = support.wait_for(RESUME_QUESTION)
            assert "Alice (helpdesk)" in out
            support.type("はい")
            back = await op.wait_state(session, lambda s: s.restart_until is None and s.phase == "active")
            assert back.operator == "Alice (helpdesk)"  # the same operator, the same session
            assert "granted" not in back.scopes.values()  # view must be granted again
            await op.request_scopes(session, ["screen:view"])
            support.wait_for("画面を見る")
            support.type("a")
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await op.screen.get()  # the screen is shared again, in the same session
            assert "サポートコード" not in support.output.text()  # no new support code
            await op.end(session, "done")
            ended = await op.wait_state(session, lambda s: s.phase == "ended")
            assert ended.ended_by == "operator"
            assert support.proc.wait(30) == 0
        finally:
            support.stop()
            service.stop()
    assert not (data_dir / RESUME_FILE).exists()
    audit = broker.cli("audit", "log").stdout
    assert "restart.request" in audit
    assert "session.restart" in audit
    assert "session.agent_back" in audit


async def test_the_session_ends_when_nobody_confirms_after_the_restart(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    alice = add_operator(broker, "alice")
    async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
        session, data_dir, _ = await _restart_granted_session(broker, tmp_path, op, alice)
        support = start_support(data_dir, "--test-pattern", "--resume-timeout", "2", lang="ja")
        try:
            support.wait_for(RESUME_QUESTION)
            started = time.monotonic()
            ended = await op.wait_state(session, lambda s: s.phase == "ended")
            assert time.monotonic() - started < 30
            assert (ended.ended_by, ended.reason) == (
                "subscriber",
                "the subscriber did not confirm after the restart",
            )
            assert support.proc.wait(30) == 0
        finally:
            support.stop()
    assert not (data_dir / RESUME_FILE).exists()
    assert isinstance(ended, SessionState)
