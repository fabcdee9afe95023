"""The operator sees, in Japanese beside the screen, that input did not arrive because the
subscriber's PC paused it (a consent question open there): the broker's ``input_paused`` notice
from the agent's report (broker/input_refusals.py). Real broker, real agent (test pattern),
Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser import console_login
from tests.helpers import (
    BrokerProcess,
    add_operator,
    confirm_control,
    enrolled_agent,
    start_support,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

NOTICE_JA = "お客さまに確認画面を表示中のため、入力は届いていません。"


def test_input_paused_on_the_pc_is_shown_to_the_operator(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str, tmp_path: Path
) -> None:
    enrolled_agent(console_broker, tmp_path / "agent", "C-310")
    kaito = add_operator(console_broker, "kaito")
    page = browser.new_page()
    console_login(page, origin, "kaito", kaito.password, kaito.totp(), new_password="kaito-new-password-1")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        page.get_by_test_id("claim-code").fill(support.support_code())
        page.get_by_test_id("claim-submit").click()
        expect(page.get_by_test_id("page-session")).to_be_visible()
        support.wait_for("View your screen")
        support.type("1")
        expect(page.get_by_test_id("scope-status-screen-view")).to_have_attribute("data-status", "granted")
        page.get_by_test_id("request-control").click()
        support.wait_for("Control your mouse and keyboard")
        support.type("1")
        confirm_control(support)
        expect(page.get_by_test_id("scope-status-input-control")).to_have_attribute("data-status", "granted")
        canvas = page.get_by_test_id("screen-canvas")
        wait_until(lambda: int(canvas.get_attribute("data-keyframes") or 0) >= 1, what="a keyframe")

        # A question opens on the PC; the operator clicks on the screen meanwhile.
        page.get_by_test_id("scope-check-inventory-os").check()
        page.get_by_test_id("request-inventory").click()
        support.wait_for("Operating system type and version")
        notice = page.get_by_test_id("input-notice")
        box = canvas.bounding_box()
        assert box is not None
        for i in range(3):
            page.mouse.click(box["x"] + 20 + i, box["y"] + 20)
        expect(notice).to_have_text(NOTICE_JA, timeout=15_000)
        expect(notice).to_have_attribute("data-refused", "1")
        support.type("")  # the subscriber answers: nothing
    finally:
        support.stop()
