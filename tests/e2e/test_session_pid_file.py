"""``session.pid`` after a killed ``request-support``: the file a SIGKILL leaves behind is known to
be stale (nobody holds its OS lock), so ``agent end`` says no session runs, removes it and signals
nobody, even when the number has since been given to another process (before, it sent that
process SIGTERM). A live session is still ended by ``agent end``. Real agent and broker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.instance import SessionPidFile, pid_of_running_session
from agent.support_devices import PID_FILE
from tests.helpers import BrokerProcess, enrolled_agent, run_agent, start_support


def test_a_killed_session_leaves_no_pid_that_agent_end_would_signal(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    data = tmp_path / "agent"
    enrolled_agent(broker, data, "C-PID")
    support = start_support(data, "--test-pattern")
    try:
        support.support_code()
        assert pid_of_running_session(data / PID_FILE) == support.proc.pid
        support.proc.send_signal(signal.SIGKILL)
        support.proc.wait(10)
    finally:
        support.stop()
    pid_path = data / PID_FILE
    assert pid_path.exists()  # SIGKILL runs no clean-up: the file stays, but nobody holds its lock

    # The number is reused by an unrelated process of the subscriber's (as happens after a while).
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_path.write_text(f"{bystander.pid}\n")
        ended = run_agent(data, "end")
        assert "No support session is running" in ended.stdout, ended.stdout + ended.stderr
        assert bystander.poll() is None, "agent end signalled a process that is not a session"
        assert not pid_path.exists()  # the stale file is gone
    finally:
        bystander.kill()
        bystander.wait(10)

    # A new session after the killed one: agent end ends it.
    again = start_support(data, "--test-pattern")
    try:
        again.support_code()
        ended = run_agent(data, "end")
        assert "No support session is running" not in ended.stdout, ended.stdout
        assert again.proc.wait(30) is not None
    finally:
        again.stop()
    assert not pid_path.exists()


def test_the_pid_file_is_private_and_held_only_while_the_session_runs(tmp_path: Path) -> None:
    path = tmp_path / PID_FILE
    with SessionPidFile(path):
        assert (path.stat().st_mode & 0o777) == 0o600
        assert pid_of_running_session(path) == os.getpid()  # held (flock is per open file)
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()
    assert pid_of_running_session(path) is None
