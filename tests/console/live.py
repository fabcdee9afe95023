"""Helpers for console tests against a real agent under Xvfb (``tests/e2e/test_console_*.py``):
log in through the form, claim a request by its code, let the subscriber answer on the agent's
terminal, and map shared-screen pixels to points on the page's canvas."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import PageLog, console_login, record
from tests.helpers import (
    BrokerProcess,
    OperatorAccount,
    SupportProcess,
    child_env,
    confirm_control,
    start_support,
)

VIEW_PROMPT = "View your screen"
CONTROL_PROMPT = "Control your mouse and keyboard"


def x_env(display: str) -> dict[str, str]:
    env = child_env(DISPLAY=display)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def real_agent(data_dir: Path, display: str, *args: str) -> SupportProcess:
    """``request-support`` capturing and injecting on ``display``, lossless (exact pixels), asking
    on its terminal only, without the "being watched" window (no window of the agent's over what
    the test looks at or aims at: remote input over it is dropped, as it must be)."""
    env = x_env(display)
    env["AGENT_INDICATOR"] = "off"
    return start_support(data_dir, "--lossless", "--consent-ui", "terminal", *args, env=env)


def operator_page(
    browser: BrowserContext, broker: BrokerProcess, account: OperatorAccount
) -> tuple[Page, PageLog]:
    page = browser.new_page()
    log = record(page)
    origin = f"https://127.0.0.1:{broker.port}"
    account.password = console_login(
        page, origin, account.name, account.password, account.totp(), new_password=account.password + "-new-1"
    )
    return page, log


def claim(page: Page, code: str) -> str:
    """Claim by code from the queue page; returns the session id now shown."""
    page.get_by_test_id("nav-queue").click()
    page.get_by_test_id("claim-code").fill(code)
    page.get_by_test_id("claim-submit").click()
    session = page.get_by_test_id("page-session")
    expect(session).to_be_visible()
    expect(session).to_have_attribute("data-session-id", re.compile(r".+"))
    return session.get_attribute("data-session-id") or ""


def grant_view(page: Page, support: SupportProcess, *, count: int = 1) -> None:
    support.wait_for(VIEW_PROMPT, count=count)
    support.type("1")
    expect(page.get_by_test_id("scope-status-screen-view")).to_have_attribute("data-status", "granted")


def grant_control(page: Page, support: SupportProcess) -> None:
    page.get_by_test_id("request-control").click()
    support.wait_for(CONTROL_PROMPT)
    support.type("a")
    confirm_control(support)  # control needs a typed yes (issue 11); the grant then waits the guard's grace
    expect(page.get_by_test_id("scope-status-input-control")).to_have_attribute(
        "data-status", "granted", timeout=15_000
    )
    expect(page.get_by_test_id("input-notice")).to_have_attribute("data-state", "granted")


def wait_keyframe(page: Page, session_id: str) -> None:
    canvas = page.get_by_test_id("screen-canvas")
    expect(canvas).to_have_attribute("data-session-id", session_id, timeout=30_000)
    expect(canvas).not_to_have_attribute("data-keyframes", "0", timeout=30_000)


def page_point(page: Page, x: int, y: int, screen: tuple[int, int]) -> tuple[float, float]:
    """Where on the page the canvas shows shared-screen pixel (x, y) (its centre)."""
    box = page.get_by_test_id("screen-canvas").bounding_box()
    assert box is not None
    return box["x"] + (x + 0.5) * box["width"] / screen[0], box["y"] + (y + 0.5) * box["height"] / screen[1]


def visible_pixel(page: Page, x: int, y: int, screen: tuple[int, int]) -> tuple[int, int, int]:
    """RGB the visible canvas shows for shared-screen pixel (x, y)."""
    rgb: list[int] = page.evaluate(
        """([x, y, sw, sh]) => {
          const c = document.getElementById("screen-canvas");
          if (c.width < 2) return [-1, -1, -1];
          const px = Math.floor((x + 0.5) * c.width / sw), py = Math.floor((y + 0.5) * c.height / sh);
          return Array.from(c.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3));
        }""",
        [x, y, *screen],
    )
    return (rgb[0], rgb[1], rgb[2])
