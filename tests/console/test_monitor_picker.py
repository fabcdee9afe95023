"""The monitor picker against a real broker and ``request-support --test-pattern --test-monitors 2``:
the picker lists the agent's ``monitor_layout`` (all + two monitors), and picking monitor 2 (and
then "all") makes the visible canvas show that monitor's own pattern, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from agent.sharing import TestPatternSource
from tests.browser import console_login, record
from tests.helpers import BrokerProcess, add_operator, enrolled_agent, start_support, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

W, H = 640, 400
POINTS = ((88, 56), (408, 56), (88, 264), (408, 264), (200, 150), (600, 380))
"""Shared-screen pixels away from the 16-px grid and the moving white block (rows 4..19)."""


def _expected_rgb(monitor: int, x: int, y: int) -> tuple[int, int, int]:
    """RGB of monitor ``monitor``'s test pattern (agent/sharing.py) at (x, y) of that monitor."""
    bgr = TestPatternSource(monitors=2).monitor_pixels(monitor)[y, x, :3]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def _visible_pixel(page: Page, x: int, y: int, shared_width: int) -> list[int]:
    """RGB of the visible canvas where shared-screen pixel (x, y) is drawn."""
    result: list[int] = page.evaluate(
        """([x, y, sw, sh]) => {
          const c = document.getElementById("screen-canvas");
          const px = Math.floor((x + 0.5) * c.width / sw), py = Math.floor((y + 0.5) * c.height / sh);
          return Array.from(c.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3));
        }""",
        [x, y, shared_width, H],
    )
    return result


def _aspect(page: Page) -> float:
    """Width / height of the visible canvas (the shared screen's, scaled to fit)."""
    ratio: float = page.evaluate(
        "(() => { const c = document.getElementById('screen-canvas'); return c.width / c.height; })()"
    )
    return ratio


def _close(got: list[int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(got, want, strict=True))


def _shows(page: Page, points: dict[tuple[int, int], tuple[int, int, int]], shared_width: int) -> bool:
    return all(_close(_visible_pixel(page, x, y, shared_width), rgb) for (x, y), rgb in points.items())


def _wait_shows(
    page: Page, points: dict[tuple[int, int], tuple[int, int, int]], shared_width: int, what: str
) -> None:
    try:
        wait_until(lambda: _shows(page, points, shared_width), timeout=20, what=what)
    except AssertionError:
        got = {p: _visible_pixel(page, *p, shared_width) for p in points}
        raise AssertionError(f"{what}: canvas shows {got}, expected {points}") from None


def test_monitor_picker_switches_the_canvas(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str, tmp_path: Path
) -> None:
    # The two monitors really differ at every point checked, so the check cannot pass by chance.
    for x, y in POINTS:
        assert not _close(list(_expected_rgb(1, x, y)), _expected_rgb(2, x, y)), (x, y)
    one = {(x, y): _expected_rgb(1, x, y) for x, y in POINTS}
    two = {(x, y): _expected_rgb(2, x, y) for x, y in POINTS}

    enrolled_agent(console_broker, tmp_path / "agent", "C-400")
    mona = add_operator(console_broker, "mona")
    page = browser.new_page()
    log = record(page)
    console_login(page, origin, "mona", mona.password, mona.totp(), new_password="mona-new-password-1")
    support = start_support(tmp_path / "agent", "--test-pattern", "--test-monitors", "2")
    try:
        picker = page.get_by_test_id("monitor-select")
        expect(picker).to_be_disabled()  # no layout before the screen is shared
        page.get_by_test_id("claim-code").fill(support.support_code())
        page.get_by_test_id("claim-submit").click()
        expect(page.get_by_test_id("page-session")).to_be_visible()
        support.wait_for("View your screen")
        support.type("1")

        # The picker lists monitor_layout: all (0) and the two 640x400 monitors; 1 is shared first.
        expect(picker).to_be_enabled()
        options = picker.locator("option")
        expect(options).to_have_count(3)
        assert options.evaluate_all("(os) => os.map((o) => o.value)") == ["0", "1", "2"]
        expect(options).to_have_text(["全モニター", "モニター 1（640×400）", "モニター 2（640×400）"])
        expect(picker).to_have_value("1")
        canvas = page.get_by_test_id("screen-canvas")
        wait_until(lambda: int(canvas.get_attribute("data-keyframes") or 0) >= 1, what="a keyframe")
        _wait_shows(page, one, W, "monitor 1's pattern")

        # Pick monitor 2: the agent switches, says so in a new layout, and the canvas follows.
        picker.select_option("2")
        wait_until(
            lambda: any('"screen_refresh"' in f and '"monitor":2' in f.replace(" ", "") for f in log.sent),
            what="screen_refresh {monitor: 2}",
        )
        _wait_shows(page, two, W, "monitor 2's pattern")
        expect(picker).to_have_value("2")
        assert _aspect(page) == pytest.approx(W / H, rel=0.01)

        # All monitors: one canvas twice as wide, monitor 1 on the left and monitor 2 on the right.
        picker.select_option("0")
        both = {**one, **{(x + W, y): rgb for (x, y), rgb in two.items()}}
        _wait_shows(page, both, 2 * W, "both monitors side by side")
        expect(picker).to_have_value("0")
        assert _aspect(page) == pytest.approx(2 * W / H, rel=0.01)

        # And back to monitor 1.
        picker.select_option("1")
        _wait_shows(page, one, W, "monitor 1's pattern again")
        expect(picker).to_have_value("1")
        assert log.page_errors == []
        assert log.foreign_requests(origin) == []
    finally:
        support.stop()
