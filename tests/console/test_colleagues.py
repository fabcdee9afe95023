"""Issue 13 in the console: invite a colleague, then transfer the session to them — Chromium,
the real broker and a real agent (``request-support --test-pattern``) answering in its terminal.

The inviter sees the subscriber's answer; the colleague sees a notice and a join button only
after the subscriber allowed them by name, then the screen read-only; after the transfer the
colleague's page is the session's own (controls shown, control not carried over) and the old
operator's page is closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.console.live import claim, grant_view, operator_page, wait_keyframe
from tests.helpers import BrokerProcess, add_operator, enrolled_agent, start_support

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_invite_then_transfer_in_the_console(
    console_broker: BrokerProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    enrolled_agent(console_broker, tmp_path / "agent", "C-700")
    alice, bob = add_operator(console_broker, "alicec"), add_operator(console_broker, "bobc")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        a, a_log = operator_page(browser, console_broker, alice)
        b, b_log = operator_page(browser, console_broker, bob)
        session = claim(a, support.support_code())
        grant_view(a, support)
        wait_keyframe(a, session)

        # Invite: the subscriber is asked by name; the colleague sees the notice, no join yet.
        a.get_by_test_id("colleague-name").fill("bobc")
        a.get_by_test_id("invite-colleague").click()
        expect(a.get_by_test_id("colleague-status")).to_have_attribute("data-status", "asked")
        notice = b.get_by_test_id("invitation")
        expect(notice).to_have_attribute("data-status", "asked")
        expect(b.get_by_test_id("invitation-join")).to_have_count(0)
        support.wait_for("Bobc (helpdesk) (operator) would like to see your screen. Allow?")
        support.type("1")
        expect(a.get_by_test_id("colleague-status")).to_have_attribute("data-status", "allowed")
        b.get_by_test_id("invitation-join").click()
        expect(b.get_by_test_id("page-session")).to_have_attribute("data-session-id", session)
        expect(b.get_by_test_id("session-readonly")).to_be_visible()
        wait_keyframe(b, session)
        expect(b.get_by_test_id("colleague-form")).to_be_hidden()

        # Transfer: after the yes the colleague owns the session; control must be asked again.
        a.get_by_test_id("colleague-name").fill("bobc")
        a.get_by_test_id("transfer-session").click()
        support.wait_for("takes over from operator")
        support.type("1")
        expect(a.get_by_test_id("banner")).to_contain_text("bobc")
        expect(b.get_by_test_id("session-operator")).to_have_text("Bobc (helpdesk)")
        expect(b.get_by_test_id("session-readonly")).to_be_hidden()
        expect(b.get_by_test_id("request-control")).to_be_visible()
        expect(b.get_by_test_id("colleague-form")).to_be_visible()
        support.wait_for("From now on Bobc (helpdesk) (operator) is helping you.")
        for log in (a_log, b_log):
            assert log.page_errors == [], log.page_errors
    finally:
        support.stop()
