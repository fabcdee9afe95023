"""Several sessions in one console, end to end: two real agents on two Xvfb displays showing
different pixels, both claimed by one operator in Debian's Chromium. Every frame is bound to its
session: each canvas shows only its own subscriber's screen, before and after the other ends
(第33条: one subscriber's screen on another's page is a secrecy failure, issue 13). Also: the
new-request alert while busy in a session, the session page's layout at 1366×768 and 1920×1080
(everything needed at once visible without scrolling), and the README's screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import SCREENSHOTS, chromium
from tests.console.live import claim, grant_view, operator_page, real_agent, visible_pixel, wait_keyframe
from tests.helpers import BrokerProcess, SupportProcess, add_operator, enrolled_agent, wait_until
from tests.x11 import draw_pattern, two_kind_picture, xvfb

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.x11]

SCREEN = (640, 400)
RED, GREEN, YELLOW = (200, 30, 30), (30, 160, 60), (230, 210, 20)
PROBES = ((20, 20), (320, 200), (600, 380))
"""Shared-screen pixels compared on the canvas (corners and centre)."""


def _close(got: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(got, want, strict=True))


def _shows(page: Page, colour: tuple[int, int, int]) -> bool:
    return all(_close(visible_pixel(page, x, y, SCREEN), colour) for x, y in PROBES)


def _expect_shows(page: Page, session_id: str, colour: tuple[int, int, int]) -> None:
    expect(page.get_by_test_id("screen-canvas")).to_have_attribute("data-session-id", session_id)
    wait_until(lambda: _shows(page, colour), timeout=20, what=f"the canvas of {session_id} showing {colour}")


def _switch(page: Page, session_id: str) -> None:
    page.locator(f"[data-testid=my-session][data-session-id='{session_id}']").click()
    expect(page.get_by_test_id("page-session")).to_have_attribute("data-session-id", session_id)


def _in_viewport(page: Page, test_id: str) -> None:
    box = page.get_by_test_id(test_id).bounding_box()
    size = page.viewport_size
    assert box is not None, test_id
    assert size is not None
    assert box["x"] >= 0, (test_id, box)
    assert box["y"] >= 0, (test_id, box)
    assert box["x"] + box["width"] <= size["width"] + 0.5, (test_id, box, size)
    assert box["y"] + box["height"] <= size["height"] + 0.5, (test_id, box, size)


def _layout_fits(page: Page) -> None:
    """Screen, consent state, controls and chat visible together; the page itself never scrolls."""
    for test_id in (
        "screen-box",
        "screen-canvas",
        "scope-status-screen-view",
        "scope-status-input-control",
        "request-control",
        "end-session",
        "view-fit",
        "key-ctrl-alt-del",
        "input-notice",
        "chat-log",
        "chat-input",
        "chat-send",
        "my-sessions",
    ):
        expect(page.get_by_test_id(test_id)).to_be_visible()
        _in_viewport(page, test_id)
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")
    box = page.get_by_test_id("screen-box").bounding_box()
    assert box is not None
    assert box["height"] >= 400, box  # the screen is most of the page


@pytest.fixture
def displays() -> Iterator[tuple[str, str]]:
    with xvfb(*SCREEN) as a, xvfb(*SCREEN) as b:
        yield a, b


@pytest.fixture
def laptop(broker: BrokerProcess) -> Iterator[BrowserContext]:
    cert = Path(broker.data_dir) / "server.pem"
    with chromium(server_cert=cert, viewport={"width": 1366, "height": 768}) as ctx:
        yield ctx


def test_two_sessions_each_canvas_shows_only_its_own_subscriber(
    broker: BrokerProcess, displays: tuple[str, str], laptop: BrowserContext, tmp_path: Path
) -> None:
    display_a, display_b = displays
    enrolled_agent(broker, tmp_path / "a", "C-1001")
    enrolled_agent(broker, tmp_path / "b", "C-1002")
    alice = add_operator(broker, "alice")
    page, log = operator_page(laptop, broker, alice)
    with ExitStack() as stack:
        stack.enter_context(draw_pattern(display_a, Image.new("RGB", SCREEN, RED)))
        stack.enter_context(draw_pattern(display_b, Image.new("RGB", SCREEN, GREEN)))
        # A "window" on each desktop (away from the compared pixels), for the screenshots.
        for display, seed in ((display_a, 1), (display_b, 2)):
            window = Image.fromarray(two_kind_picture(260, 140, seed=seed))
            stack.enter_context(draw_pattern(display, window, x=340, y=40))
        agents: list[SupportProcess] = []
        stack.callback(lambda: [a.stop() for a in agents])
        agent_a = real_agent(tmp_path / "a", display_a)
        agents.append(agent_a)
        session_a = claim(page, agent_a.support_code())
        grant_view(page, agent_a)
        wait_keyframe(page, session_a)
        _expect_shows(page, session_a, RED)

        # A new request while the operator is busy in C-1001: badge, title, alert, and a browser
        # notification (allowed for this origin; the constructor is watched).
        laptop.grant_permissions(["notifications"], origin=f"https://127.0.0.1:{broker.port}")
        page.evaluate(
            """() => { window.__notes = []; const N = window.Notification;
              window.Notification = class extends N {
                constructor(title, options) { window.__notes.push(title); super(title, options); }
              }; }"""
        )
        assert not page.get_by_test_id("new-request-alert").is_visible()
        agent_b = real_agent(tmp_path / "b", display_b)
        agents.append(agent_b)
        code_b = agent_b.support_code()
        alert = page.get_by_test_id("new-request-alert")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("C-1002")
        expect(alert).to_have_attribute("data-count", "1")
        assert page.title().startswith("(1) ")
        assert page.evaluate("window.__notes") == ["新しいサポート依頼"]
        expect(page.get_by_test_id("nav-queue-count")).to_have_text("1")
        expect(page.get_by_test_id("page-session")).to_have_attribute("data-session-id", session_a)
        _expect_shows(page, session_a, RED)  # still busy in C-1001, undisturbed

        # Take C-1002 as well: its own canvas, its own pixels.
        session_b = claim(page, code_b)
        assert session_b != session_a
        expect(alert).to_be_hidden()
        assert not page.title().startswith("(")
        grant_view(page, agent_b)
        wait_keyframe(page, session_b)
        _expect_shows(page, session_b, GREEN)
        expect(page.get_by_test_id("my-session")).to_have_count(2)
        expect(page.get_by_test_id("session-contract")).to_have_text("C-1002")

        # The layout at 1366x768, and the README's screenshots (Japanese).
        _layout_fits(page)
        page.get_by_test_id("chat-input").fill("こんにちは、サポートのアリスです。")
        page.get_by_test_id("chat-send").click()
        agent_b.wait_for("サポートのアリスです")
        page.screenshot(path=str(SCREENSHOTS / "session.png"))
        # Back in C-1001, C-1002's subscriber writes: a count on its button, nothing on this page.
        _switch(page, session_a)
        _expect_shows(page, session_a, RED)
        agent_b.type("まだつながりませんか？")
        unread = page.locator(f"[data-testid=my-session][data-session-id='{session_b}']")
        expect(unread.get_by_test_id("my-session-unread")).to_have_text("1")
        expect(page.get_by_test_id("chat-log")).not_to_contain_text("まだつながりませんか")
        page.screenshot(path=str(SCREENSHOTS / "switcher.png"))
        _switch(page, session_b)
        expect(page.get_by_test_id("chat-log")).to_contain_text("まだつながりませんか")
        expect(unread.get_by_test_id("my-session-unread")).to_have_count(0)

        # C-1001's screen changes while C-1002 is shown: never drawn here.
        with draw_pattern(display_a, Image.new("RGB", SCREEN, YELLOW)):
            for _ in range(10):
                assert _shows(page, GREEN)
                page.wait_for_timeout(100)
            # Back to C-1001: its newest picture, kept up to date while hidden.
            _switch(page, session_a)
            _expect_shows(page, session_a, YELLOW)
            expect(page.get_by_test_id("session-contract")).to_have_text("C-1001")
            _switch(page, session_b)
            _expect_shows(page, session_b, GREEN)

            # C-1001's subscriber ends: C-1002's canvas still shows only C-1002.
            agent_a.type("/end")
            assert agent_a.proc.wait(30) == 0
            ended = page.locator(f"[data-testid=my-session][data-session-id='{session_a}']")
            expect(ended).to_have_attribute("data-phase", "ended")
            for _ in range(5):
                assert _shows(page, GREEN)
                page.wait_for_timeout(100)

        # The ended session's page: no picture left, the reason in Japanese.
        _switch(page, session_a)
        expect(page.get_by_test_id("session-ended")).to_contain_text("お客さまが終了しました")
        expect(page.get_by_test_id("session-ended")).not_to_contain_text("ended by")
        expect(page.get_by_test_id("screen-canvas")).to_have_attribute("width", "1")
        expect(page.get_by_test_id("screen-placeholder")).to_be_visible()
        expect(page.get_by_test_id("session-error")).to_be_hidden()
        _switch(page, session_b)
        _expect_shows(page, session_b, GREEN)

        # And at 1920x1080.
        page.set_viewport_size({"width": 1920, "height": 1080})
        _layout_fits(page)

        # The operator ends C-1002 with a wrap-up note, kept in the session's audit summary.
        page.get_by_test_id("end-session").click()
        page.get_by_test_id("end-note").fill("ルーター再起動で解決")
        page.get_by_test_id("end-session").click()
        expect(page.get_by_test_id("session-phase")).to_have_attribute("data-phase", "ended")
        assert agent_b.proc.wait(30) == 0
        expect(page.get_by_test_id("screen-canvas")).to_have_attribute("width", "1")
        audit = broker.cli("audit", "log", "--subject", session_b).stdout
        assert "ルーター再起動で解決" in audit, audit
        assert log.page_errors == []
