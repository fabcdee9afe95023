"""Real remote control end to end, under Xvfb: input reaches the X server only with control granted.

Real processes (broker, ``python -m agent request-support`` on a private Xvfb, the helpdesk client
as the operator) over mutual TLS on 127.0.0.1. What the operator's input did is read back from the
X server itself (``xdotool getmouselocation``, a Tk window that reports clicks and typed text). The
real :class:`agent.screen_source.InjectorSink` prints nothing, so nothing here relies on the agent's
own word.

These tests fail, never skip, without Xvfb/xdotool (see ``tests/x11.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from protocol.messages import Error
from tests.e2e.screen_sessions import (
    HEIGHT,
    VIEW_AND_CONTROL,
    WIDTH,
    Live,
    drain_frames,
    live_session,
    next_frame,
    pointer,
    x_env,
)
from tests.helpers import (
    BrokerProcess,
    grant_control,
    wait_until,
)
from tests.x11 import TkProbe, xvfb


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


# -- (c) + (d): input reaches the real X server only with control granted ----------------------------


PROBE = (100, 80, 400, 300)  # x, y, w, h: a text entry (30 px) above a click canvas
TARGET = (300, 250)  # inside the probe's canvas; the shared monitor is the whole screen


@contextlib.asynccontextmanager
async def _control_session(
    broker: BrokerProcess, display: str, tmp_path: Path, *, answer: str, control: str
) -> AsyncIterator[tuple[TkProbe, Live]]:
    """The Tk probe on screen and a session asking for view and control, answered with
    ``answer``; yields once the control scope is ``control``."""
    x, y, w, h = PROBE
    with TkProbe(display, x=x, y=y, w=w, h=h) as probe:
        async with live_session(
            broker,
            tmp_path,
            x_env(display),
            scopes=VIEW_AND_CONTROL,
            answer=answer,
            granted=lambda s: s.scopes.get("input:control") == control,
        ) as live:
            yield probe, live


@pytest.mark.x11
@pytest.mark.e2e
async def test_click_moves_the_real_pointer_only_after_control_is_granted_and_keys_type(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    view_only = _control_session(broker, display, tmp_path, answer="1", control="denied")
    async with view_only as (probe, live):
        op, session = live.op, live.session
        start = pointer(display)
        assert start != TARGET

        # Without control: refused by the broker, nothing moves, nothing is clicked.
        await op.send_input(session, "button", x=TARGET[0], y=TARGET[1], button="left", action="click")
        refusal = await op.next_event(Error)
        assert isinstance(refusal, Error)
        assert refusal.code == "consent_required"
        await asyncio.sleep(0.5)
        assert pointer(display) == start
        assert not [line for line in probe.lines() if line.startswith("click")]

        # The subscriber grants control: the click lands on the real X server.
        grant_control(live.support)
        await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
        await op.send_input(session, "button", x=TARGET[0], y=TARGET[1], button="left", action="click")
        assert probe.wait_for("click", timeout=10) == f"click 1 {TARGET[0]} {TARGET[1]}"
        assert pointer(display) == TARGET

        # A key press and typed text go into the focused window (the probe's entry).
        await op.send_input(session, "text", text="Hello World 1234")
        await op.send_input(session, "key", key="Backspace", action="click")
        # "Hello World 123": the text arrived, and the Backspace key press removed the "4".
        wait_until(lambda: probe.text() == "Hello World 123", timeout=10, what="typed text")
        # The agent never prints what was typed.
        assert "Hello" not in live.support.output.text()


@pytest.mark.x11
@pytest.mark.e2e
async def test_nothing_is_applied_after_consent_is_withdrawn(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    async with _control_session(broker, display, tmp_path, answer="a", control="granted") as (probe, live):
        op, session = live.op, live.session
        await op.send_input(session, "button", x=TARGET[0], y=TARGET[1], button="left", action="click")
        probe.wait_for("click", timeout=10)
        await op.send_input(session, "text", text="ok")
        wait_until(lambda: probe.text() == "ok", timeout=10, what="typed text")
        await next_frame(op)  # the screen is being shared

        # Control withdrawn: every kind of input is refused and the X server sees nothing.
        live.support.type("/withdraw control")
        await op.wait_state(session, lambda s: s.scopes.get("input:control") == "withdrawn")
        for kind, fields in (
            ("move", {"x": 20, "y": 30}),
            ("button", {"x": 450, "y": 300, "button": "left", "action": "click"}),
            ("text", {"text": "NO"}),
            ("key", {"key": "Backspace", "action": "click"}),
        ):
            await op.send_input(session, kind, **fields)
            refusal = await op.next_event(Error)
            assert isinstance(refusal, Error)
            assert refusal.code == "consent_required"
        await asyncio.sleep(1.0)
        assert pointer(display) == TARGET
        assert probe.text() == "ok"
        assert not [line for line in probe.lines() if line.startswith("click")]

        # View withdrawn: the screen stops (frames already in flight may still land).
        live.support.type("/withdraw view")
        await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "withdrawn")
        await asyncio.sleep(0.5)
        drain_frames(op)
        await asyncio.sleep(2.5)  # longer than the 2 s keep-alive interval
        assert op.screen.empty(), "a screen update arrived after view was withdrawn"

        # Granting control again works again: withdrawal was not a broken connection.
        grant_control(live.support)
        await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
        await op.send_input(session, "move", x=TARGET[0] + 10, y=TARGET[1] + 10)
        wait_until(lambda: pointer(display) == (TARGET[0] + 10, TARGET[1] + 10), timeout=10)
