"""A session that ends while the consent window is open: the question is void, so the window
closes at once and the agent exits (found with py-spy: ``asyncio.run`` waited for the dialog's
thread until the question timed out). Real broker and agent processes, the window on Xvfb, the
operator with the helpdesk client; what is on the screen is read from the X server."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from tests.helpers import (
    BrokerProcess,
    add_operator,
    child_env,
    enrolled_agent,
    login,
    start_support,
    wait_until,
)
from tests.x11 import xdotool, xvfb

pytestmark = [pytest.mark.x11, pytest.mark.e2e]

TITLE = "Remote support permission"
EXIT_BOUND = 5.0
"""Seconds the agent may take to exit after the operator ended the session (the question's own
timeout is 60 s by default, 20 s with this broker)."""


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(1024, 640) as d:
        yield d


def _windows(display: str) -> list[str]:
    try:
        return xdotool(display, "search", "--onlyvisible", "--name", TITLE).split()
    except subprocess.CalledProcessError:  # nothing matches
        return []


@pytest.mark.parametrize(
    ("consent_ui", "keyboard", "later", "how"),
    [
        ("dialog", False, False, "operator"),
        ("both", True, False, "operator"),
        ("dialog", True, True, "operator"),
        ("both", True, True, "operator"),
        ("dialog", True, False, "sigterm"),
    ],
    ids=["dialog-no-terminal", "both", "dialog-mid-session", "both-mid-session", "dialog-sigterm"],
)
async def test_ending_the_session_closes_the_consent_window_and_the_agent_exits(
    broker: BrokerProcess,
    display: str,
    tmp_path: Path,
    consent_ui: str,
    keyboard: bool,
    later: bool,
    how: str,
) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-VOID")
    account = add_operator(broker, "bob")
    env = child_env(DISPLAY=display, AGENT_INDICATOR="off")
    env.pop("WAYLAND_DISPLAY", None)
    support = start_support(tmp_path / "agent", "--consent-ui", consent_ui, "--log-level", "INFO", env=env)
    try:
        code = support.support_code()
        if not keyboard:  # started from a menu: no terminal at all
            assert support.proc.stdin is not None
            support.proc.stdin.close()
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            session = (await op.claim(code=code, scopes=["screen:view"])).session_id
            support.wait_for("consent window shown: ")
            if later:  # the first question answered in the window; a later one stays open
                wait_until(lambda: _windows(display), timeout=10, what="the first window")
                xdotool(display, "windowfocus", "--sync", _windows(display)[0])
                xdotool(display, "key", "Escape")  # "deny all"
                await op.wait_state(session, lambda s: s.phase == "active")
                await op.request_scopes(session, ["inventory:os"])
                support.wait_for("consent window shown: ", count=2)
            assert _windows(display), "the consent window is not on the screen"
            ended_at = time.monotonic()
            if how == "operator":
                await op.end(session)
                await op.wait_state(session, lambda s: s.phase == "ended")  # ended at the broker
            else:  # the subscriber closes the terminal / logs out
                support.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            support.proc.wait(EXIT_BOUND + 25)
        assert support.proc.poll() is not None, support.output.text()
        took = time.monotonic() - ended_at
        assert took < EXIT_BOUND, f"the agent took {took:.1f} s to exit"
        assert support.proc.returncode == 0, support.output.text()
        wait_until(lambda: not _windows(display), timeout=2, what="the consent window gone")
    finally:
        support.stop()
