"""Remote control cannot operate the consent window or the "being watched" indicator (issue 11,
item 1 and the indicator), with real clicks on a real X server (Xvfb).

Real processes: the broker, ``python -m agent request-support`` with ``DISPLAY`` on a private
Xvfb (it captures with mss and injects with XTest), the helpdesk client as an operator who holds
``input:control``. The operator's clicks go the whole way (operator → broker → agent), and the
agent must drop them; the subscriber's clicks are made with ``xdotool`` on the same X server, as
a person's would be. What happened is read from the X server (pointer position, windows), the
broker's audit log and the signed receipts, not from the agent's word.

These tests fail, never skip, without Xvfb/xdotool (see ``tests/x11.py``).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.input.consent_guard import DEFAULT_GRACE
from helpdesk import HelpdeskClient
from protocol.messages import InventoryView
from tests.helpers import (
    BrokerProcess,
    SupportProcess,
    add_operator,
    child_env,
    confirm_control,
    enrolled_agent,
    login,
    start_support,
    wait_until,
)
from tests.x11 import xdotool, xvfb

pytestmark = [pytest.mark.x11, pytest.mark.e2e]

WIDTH, HEIGHT = 1024, 640
SHOWN_RE = re.compile(r"consent window shown: (\{.*\})")
INDICATOR_RE = re.compile(r"indicator shown at (\[[^\]]*\]), buttons (\{.*\})")


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


def _pointer(display: str) -> tuple[int, int]:
    out = dict(part.split(":") for part in xdotool(display, "getmouselocation").split())
    return int(out["x"]), int(out["y"])


def _windows(display: str, name: str) -> list[str]:
    try:
        return xdotool(display, "search", "--onlyvisible", "--name", name).split()
    except subprocess.CalledProcessError:  # nothing matches
        return []


def _window_box(display: str, name: str) -> tuple[int, int, int, int]:
    """Where the named window is now, as the X server says."""
    window = _windows(display, name)[0]
    out = xdotool(display, "getwindowgeometry", "--shell", window)
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def _center(rect: Any) -> tuple[int, int]:
    x, y, w, h = rect
    return x + min(w // 2, 10), y + h // 2


def _receipts(broker: BrokerProcess, session: str) -> list[str]:
    return broker.cli("audit", "receipts", session, check=False).stdout.strip().splitlines()


def _audit(broker: BrokerProcess) -> list[dict[str, Any]]:
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        rows = db.execute("SELECT action, subject, details FROM audit ORDER BY seq").fetchall()
    finally:
        db.close()
    return [{"action": a, "subject": s, **json.loads(d)} for a, s, d in rows]


@dataclass
class Live:
    op: HelpdeskClient
    support: SupportProcess
    session: str


@contextlib.asynccontextmanager
async def _controlled(
    broker: BrokerProcess, display: str, tmp_path: Path, *, indicator: bool
) -> AsyncIterator[Live]:
    """A session whose subscriber granted view and control in the terminal (and confirmed)."""
    enrolled_agent(broker, tmp_path / "agent", "C-GUARD")
    account = add_operator(broker, "mallory")
    env = child_env(DISPLAY=display, **({} if indicator else {"AGENT_INDICATOR": "off"}))
    env.pop("WAYLAND_DISPLAY", None)
    support = start_support(tmp_path / "agent", "--consent-ui", "both", "--log-level", "INFO", env=env)
    try:
        code = support.support_code()
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            session = (await op.claim(code=code, scopes=["screen:view", "input:control"])).session_id
            support.wait_for("Control your mouse and keyboard")
            shown = _dialog_rects(support)  # the same question is in a window too
            assert "input:control" in shown
            support.type("a")
            confirm_control(support)
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            yield Live(op, support, session)
    finally:
        support.stop()


def _dialog_rects(support: SupportProcess, count: int = 1) -> dict[str, tuple[int, int, int, int]]:
    support.wait_for("consent window shown: ", count=count)
    found = SHOWN_RE.findall(support.output.text())
    rects = ast.literal_eval(found[count - 1])
    assert isinstance(rects, dict)
    return rects


async def _click(live: Live, x: int, y: int) -> None:
    await live.op.send_input(live.session, "move", x=x, y=y)
    await live.op.send_input(live.session, "button", x=x, y=y, button="left", action="click")


async def test_the_operator_cannot_answer_the_consent_window_but_the_subscriber_can(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    async with _controlled(broker, display, tmp_path, indicator=False) as live:
        op, session, support = live.op, live.session, live.support
        # Control works: the operator moves the real pointer.
        await op.send_input(session, "move", x=900, y=600)
        wait_until(lambda: _pointer(display) == (900, 600), timeout=10, what="the operator's move")

        # The operator asks for an inventory item; the question opens in the window.
        await op.request_scopes(session, ["inventory:os"])
        rects = _dialog_rects(support, count=2)
        assert set(rects) >= {"inventory:os", "allow", "window"}
        assert _windows(display, "Remote support permission")

        # The operator ticks the box and presses 許可 through remote control: nothing happens.
        for target in (rects["inventory:os"], rects["allow"]):
            await _click(live, *_center(target))
        await asyncio.sleep(1.0)  # let any injected click land, were it applied
        assert _pointer(display) == (900, 600), "the operator's input was applied during the question"
        assert _windows(display, "Remote support permission"), "the window was answered"
        assert len(_receipts(broker, session)) == 1
        support.wait_for("Remote control is paused")

        # The subscriber's own clicks (xdotool: a person at the PC) are what count.
        for target in (rects["inventory:os"], rects["allow"]):
            x, y = _center(target)
            xdotool(display, "mousemove", str(x), str(y), "click", "1")
        view = await op.next_event(InventoryView, timeout=30)
        assert isinstance(view, InventoryView)
        assert [item.item for item in view.items] == ["os"]
        receipts = _receipts(broker, session)
        assert len(receipts) == 2, receipts
        assert "inventory:os" in receipts[1].split("denied=")[0]
        assert all("signature OK" in line for line in receipts)

        # After the question and its grace time, control works again.
        await asyncio.sleep(DEFAULT_GRACE + 2.5)  # + the local-input pause of the subscriber's click
        await op.send_input(session, "move", x=40, y=500)
        wait_until(lambda: _pointer(display) == (40, 500), timeout=10, what="control after the question")

    grants = [e for e in _audit(broker) if e["action"] == "consent.receipt"]
    assert len(grants) == 2


def _indicator(support: SupportProcess, count: int = 1) -> tuple[list[int], dict[str, list[int]]]:
    support.wait_for("indicator shown at ", count=count)
    rect, buttons = INDICATOR_RE.findall(support.output.text())[count - 1]
    return ast.literal_eval(rect), ast.literal_eval(buttons)


async def test_the_indicator_shows_while_watched_and_only_the_subscriber_can_press_it(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    async with _controlled(broker, display, tmp_path, indicator=True) as live:
        op, session, support = live.op, live.session, live.support
        rect, buttons = _indicator(support)
        assert _windows(display, "Remote support in progress"), "no indicator on the screen"
        x, y, w, _ = rect
        assert WIDTH - 32 <= x + w <= WIDTH  # on screen, at the top right
        assert 0 <= y < HEIGHT // 4

        # The operator aims at "End" and "Stop remote control": dropped, the session goes on.
        await op.send_input(session, "move", x=100, y=100)
        wait_until(lambda: _pointer(display) == (100, 100), timeout=10, what="the operator's move")
        for name in ("end", "withdraw"):
            await _click(live, *_center(buttons[name]))
        await asyncio.sleep(1.0)  # let any injected click land, were it applied
        assert _pointer(display) == (100, 100), "the operator's pointer reached the indicator"
        await op.chat(session, "still here?")
        support.wait_for("still here?")  # the session goes on
        assert support.proc.poll() is None
        assert len(_receipts(broker, session)) == 1  # control was not withdrawn either

        # The subscriber presses "Stop remote control": control is withdrawn, view stays.
        xdotool(display, "mousemove", *map(str, _center(buttons["withdraw"])), "click", "1")
        state = await op.wait_state(session, lambda s: s.scopes.get("input:control") == "withdrawn")
        assert state.scopes["screen:view"] == "granted"
        assert _windows(display, "Remote support in progress")  # still watched: still shown

        # The subscriber presses "End": the session ends, by the subscriber. The window may have
        # changed its width with its text; "End" keeps its place from the bottom-right corner.
        ex, ey = _center(buttons["end"])
        right, bottom = x + w - ex, y + rect[3] - ey
        wx, wy, ww, wh = _window_box(display, "Remote support in progress")
        xdotool(display, "mousemove", str(wx + ww - right), str(wy + wh - bottom), "click", "1")
        ended = await op.wait_state(session, lambda s: s.phase == "ended")
        assert ended.ended_by == "subscriber"
        assert support.proc.wait(30) == 0
    wait_until(lambda: not _windows(display, "Remote support in progress"), timeout=10, what="indicator gone")
    end = next(e for e in _audit(broker) if e["action"] == "session.end")
    assert end["ended_by"] == "subscriber"
