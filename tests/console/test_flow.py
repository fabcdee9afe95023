"""The console against a real broker and a real agent (``request-support --test-pattern``):
login with TOTP and the first-login password change, the live queue, claim by code, consent
states, the screen on the canvas, input refused then allowed, chat, the supervisor's read-only
join and audit viewer, ending the session, logout, and the in-memory token."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import SCREENSHOTS, console_login, record
from tests.helpers import (
    BrokerProcess,
    SupportProcess,
    add_operator,
    confirm_control,
    enrolled_agent,
    start_support,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


# The agent's test pattern (agent/sharing.py pattern_pixels, 640x400): RGB of each quadrant.
PATTERN = (640, 400)
QUADRANTS = {(88, 56): (200, 0, 0), (408, 56): (0, 200, 0), (88, 264): (0, 0, 200), (408, 264): (200, 200, 0)}


def _visible_pixel(page: Page, x: int, y: int) -> list[int]:
    """RGB of the visible canvas at the point that shows shared-screen pixel (x, y)."""
    result: list[int] = page.evaluate(
        """([x, y, sw, sh]) => {
          const c = document.getElementById("screen-canvas");
          const px = Math.floor((x + 0.5) * c.width / sw), py = Math.floor((y + 0.5) * c.height / sh);
          return Array.from(c.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3));
        }""",
        [x, y, *PATTERN],
    )
    return result


def _click_screen(page: Page, x: int, y: int) -> None:
    """Click the canvas where shared-screen pixel (x, y) is shown (scrolling it into view)."""
    canvas = page.get_by_test_id("screen-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    canvas.click(
        position={"x": (x + 0.5) * box["width"] / PATTERN[0], "y": (y + 0.5) * box["height"] / PATTERN[1]}
    )


def _agent_says(support: SupportProcess, text: str, *, count: int = 1) -> None:
    """Wait for the agent to print ``text``; on timeout, show what it did print."""
    try:
        support.wait_for(text, count=count)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- agent output ---\n{support.output.text()[-3000:]}") from None


def _status(page: Page, slug: str) -> Any:
    return expect(page.get_by_test_id(f"scope-status-{slug}"))


def test_login_errors_lockout_logout_and_memory_only_token(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str
) -> None:
    olga = add_operator(console_broker, "olga")
    page = browser.new_page()
    log = record(page)
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")

    # Five wrong passwords lock the account; the sixth attempt says so, with the time.
    for attempt in range(6):
        page.get_by_test_id("login-name").fill("olga")
        page.get_by_test_id("login-password").fill(f"wrong-{attempt}")
        page.get_by_test_id("login-totp").fill(olga.totp())
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("login-submit")).to_be_enabled()
        expect(page.get_by_test_id("login-error")).to_be_visible()
    error = page.get_by_test_id("login-error").text_content() or ""
    assert "アカウントはロックされています" in error
    assert "分後" in error
    console_broker.cli("operator", "unlock", "olga")

    password = console_login(
        page, origin, "olga", olga.password, olga.totp(), new_password="olga-new-password-1"
    )
    assert password == "olga-new-password-1"
    expect(page.get_by_test_id("queue-empty")).to_be_visible()
    expect(page.get_by_test_id("whoami")).to_have_text("Olga (helpdesk)（オペレータ）")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "online")
    assert not page.get_by_test_id("nav-supervisor").is_visible()

    # The token is nowhere but in the page's memory.
    storage = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert storage == [0, 0, ""]
    assert browser.cookies() == []

    # A reload forgets the login.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("page-login")).to_be_visible()

    # A TOTP code is single use (the broker refuses replays): log in again with the next step's.
    console_login(
        page, origin, "olga", password, olga.totp(time.time() + 30), new_password="unused-password-2"
    )
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("page-login")).to_be_visible()
    expect(page.get_by_test_id("banner")).to_have_text("ログアウトしました。")
    assert not page.get_by_test_id("logout").is_visible()
    assert log.foreign_requests(origin) == []
    assert log.page_errors == []


def test_operator_session_and_supervisor_in_the_browser(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str, tmp_path: Path
) -> None:
    enrolled_agent(console_broker, tmp_path / "agent", "C-200")
    alice = add_operator(console_broker, "alice")
    sam = add_operator(console_broker, "sam", role="supervisor")
    page = browser.new_page()
    log = record(page)
    console_login(page, origin, "alice", alice.password, alice.totp(), new_password="alice-new-password-1")

    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        # The queue is pushed live: the request appears without reloading.
        row = page.get_by_test_id("queue-row").filter(has_text="C-200")
        expect(row).to_have_count(1)
        expect(row.get_by_test_id("queue-machine")).to_have_text("pc-C-200")
        expect(row.get_by_test_id("queue-waiting")).to_contain_text("秒")

        # A wrong code is refused in words; the right one opens the session.
        wrong = "000000" if code != "000000" else "111111"
        page.get_by_test_id("claim-code").fill(wrong)
        page.get_by_test_id("claim-submit").click()
        expect(page.get_by_test_id("claim-error")).to_contain_text("サポートコード")
        page.get_by_test_id("claim-code").fill(code)
        page.get_by_test_id("claim-submit").click()
        expect(page.get_by_test_id("page-session")).to_be_visible()
        expect(page.get_by_test_id("session-contract")).to_have_text("C-200")
        _status(page, "screen-view").to_have_attribute("data-status", "requested")

        support.wait_for("View your screen")
        support.type("1")
        _status(page, "screen-view").to_have_attribute("data-status", "granted")
        _status(page, "screen-view").to_have_text("許可")
        _status(page, "input-control").to_have_attribute("data-status", "none")
        _status(page, "inventory-router").to_have_text("未依頼")
        expect(page.get_by_test_id("session-phase")).to_have_attribute("data-phase", "active")

        # The screen arrives, decoded and scaled into the visible canvas.
        canvas = page.get_by_test_id("screen-canvas")
        wait_until(lambda: int(canvas.get_attribute("data-keyframes") or 0) >= 1, what="a keyframe")
        expect(page.get_by_test_id("screen-placeholder")).to_be_hidden()
        for (x, y), rgb in QUADRANTS.items():
            got = _visible_pixel(page, x, y)
            assert all(abs(a - b) <= 12 for a, b in zip(got, rgb, strict=True)), ((x, y), got, rgb)

        # Without control, input never leaves the page and the notice says why.
        notice = page.get_by_test_id("input-notice")
        expect(notice).to_have_attribute("data-state", "not_granted")
        _click_screen(page, 100, 200)
        page.keyboard.type("x")
        expect(notice).to_have_attribute("data-blocked", "3")
        expect(notice).to_contain_text("送信されませんでした")
        assert "input applied" not in support.output.text()

        # Ask for control; the subscriber grants it; clicks map back to screen pixels.
        page.get_by_test_id("request-control").click()
        _status(page, "input-control").to_have_attribute("data-status", "requested")
        support.wait_for("Control your mouse and keyboard")
        support.type("a")
        confirm_control(support)  # control needs a typed yes (issue 11)
        _status(page, "input-control").to_have_attribute("data-status", "granted")
        expect(notice).to_have_attribute("data-state", "granted")
        _click_screen(page, 100, 200)
        _agent_says(support, "input applied: move 100,200")
        _agent_says(support, "input applied: button 100,200")
        page.keyboard.type("ok")
        _agent_says(support, "input applied: text", count=2)

        # Chat both ways.
        page.get_by_test_id("chat-input").fill("こんにちは、サポートのアリスです")
        page.get_by_test_id("chat-send").click()
        support.wait_for("こんにちは、サポートのアリスです")
        support.type("画面が固まりました")
        theirs = page.locator("[data-testid=chat-message][data-sender=subscriber]")
        expect(theirs.locator(".chat-text")).to_have_text("画面が固まりました")
        expect(page.locator("[data-testid=chat-message][data-sender='Alice (helpdesk)']")).to_have_count(1)

        # (docs/screenshots/session.png is taken by test_inventory_panel.py, with the inventory.)

        # A supervisor joins read-only from another page, and reads and verifies the audit log.
        sup = browser.new_page()
        sup_log = record(sup)
        console_login(sup, origin, "sam", sam.password, sam.totp(), new_password="sam-new-password-1")
        sup.get_by_test_id("lang-switch").click()  # and in English
        sup.get_by_test_id("nav-supervisor").click()
        live = sup.get_by_test_id("session-row")
        expect(live).to_have_count(1)
        expect(live).to_contain_text("C-200")
        live.get_by_test_id("session-join").click()
        expect(sup.get_by_test_id("session-readonly")).to_be_visible()
        expect(sup.get_by_test_id("input-notice")).to_have_attribute("data-state", "readonly")
        expect(sup.get_by_test_id("request-control")).to_be_hidden()
        sup_canvas = sup.get_by_test_id("screen-canvas")
        wait_until(
            lambda: int(sup_canvas.get_attribute("data-keyframes") or 0) >= 1, what="supervisor keyframe"
        )
        sup.get_by_test_id("nav-supervisor").click()
        sup.get_by_test_id("audit-load").click()
        expect(sup.locator("[data-testid=audit-row]", has_text="session.claim")).not_to_have_count(0)
        sup.get_by_test_id("audit-verify").click()
        expect(sup.get_by_test_id("audit-verify-result")).to_have_attribute("data-ok", "true")
        expect(sup.get_by_test_id("audit-verify-result")).to_contain_text("intact")
        sup.screenshot(path=str(SCREENSHOTS / "supervisor.png"), full_page=True)

        # The operator ends the session (two clicks: arm, confirm).
        page.get_by_test_id("end-session").click()
        expect(page.get_by_test_id("end-session")).to_have_attribute("data-armed", "true")
        page.get_by_test_id("end-session").click()
        expect(page.get_by_test_id("session-ended")).to_be_visible()
        expect(page.get_by_test_id("session-phase")).to_have_attribute("data-phase", "ended")
        _status(page, "input-control").to_have_attribute("data-status", "withdrawn")
        expect(notice).to_have_attribute("data-state", "ended")
        assert support.proc.wait(30) == 0
        page.get_by_test_id("session-back").click()
        expect(page.get_by_test_id("page-queue")).to_be_visible()
        for recorded in (log, sup_log):
            assert recorded.foreign_requests(origin) == []
            assert recorded.page_errors == []
    finally:
        support.stop()
