"""The console's restart of the subscriber's PC (issue 16): one button asks for ``system:restart``,
then restarts; the page shows "restarting" while the PC is away, and the same session becomes
active again once the subscriber says "yes" after the restart. The restart is simulated by the
agent's ``ISP_AGENT_REBOOT_COMMAND`` (a script that sends SIGTERM to the agent)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.console.live import claim, operator_page
from tests.helpers import BrokerProcess, add_operator, child_env, enrolled_agent, start_support

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

REBOOT_SCRIPT = "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n"


def test_the_console_restarts_the_pc_and_shows_the_session_restarting_then_back(
    console_broker: BrokerProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    data_dir = tmp_path / "agent"
    enrolled_agent(console_broker, data_dir, "C-RESTART-UI")
    script = tmp_path / "reboot.py"
    script.write_text(REBOOT_SCRIPT)
    env = child_env(ISP_AGENT_REBOOT_COMMAND=f"{sys.executable} {script}")
    page, log = operator_page(browser, console_broker, add_operator(console_broker, "rita"))
    support = start_support(data_dir, "--test-pattern", "--consent-ui", "terminal", env=env)
    again = None
    try:
        session = claim(page, support.support_code())
        support.wait_for("View your screen")
        support.type("")  # nothing at first
        restart = page.get_by_test_id("request-restart")
        expect(restart).to_be_enabled()
        restart.click()
        support.wait_for("Restart your computer")
        support.type("1")
        status = page.get_by_test_id("session-phase")
        expect(restart).to_be_enabled()
        restart.click()  # now granted: the same button restarts
        expect(status).to_have_attribute("data-phase", "restarting")
        assert support.proc.wait(30) is not None
        expect(status).to_have_attribute("data-phase", "restarting")
        again = start_support(data_dir, "--test-pattern", "--consent-ui", "terminal")
        again.wait_for("Continue?")
        again.type("yes")
        expect(status).to_have_attribute("data-phase", "active", timeout=30_000)
        expect(page.get_by_test_id("page-session")).to_have_attribute("data-session-id", session)
        assert "Support code" not in again.output.text()
    finally:
        support.stop()
        if again is not None:
            again.stop()
    assert log.page_errors == []
