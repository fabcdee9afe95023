"""Real screen sharing and remote control end to end, under Xvfb.

Real processes: ``python -m broker serve``, ``python -m agent request-support`` with ``DISPLAY``
pointing at a private Xvfb (so the agent captures with ``mss`` and injects with pynput/XTest),
and the helpdesk client as the operator, all over mutual TLS on 127.0.0.1. What the operator
receives is decoded with :class:`helpdesk.canvas.Canvas` and compared with what was drawn on the
X server (``tests.x11.draw_pattern``); what the operator's input did is read back from the X
server itself (``xdotool getmouselocation``, a Tk window that reports clicks and typed text).
The real :class:`agent.screen_source.InjectorSink` prints nothing, so nothing here relies on the
agent's own word.

These tests fail, never skip, without Xvfb/xdotool (see ``tests/x11.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpdesk import HelpdeskClient
from helpdesk.canvas import Canvas
from protocol.messages import Chat, Error, MonitorLayout, SessionState
from protocol.screen import HEADER_SIZE, RECT_HEADER_SIZE, Encoding, ScreenUpdate
from tests.helpers import (
    BrokerProcess,
    SupportProcess,
    add_operator,
    child_env,
    confirm_control,
    enrolled_agent,
    grant_control,
    login,
    start_agent,
    start_support,
    wait_until,
)
from tests.x11 import TkProbe, draw_pattern, two_kind_picture, xdotool, xvfb

WIDTH, HEIGHT = 640, 400
ALWAYS = ("--hours", "00:00-00:00")
VIEW_AND_CONTROL = ["screen:view", "input:control"]

JPEG_MAX_MEAN_ABS_ERROR = 3.0
"""Stated error of the lossy (default) path: mean absolute error per RGB channel (0-255) over the
whole screen, at the pipeline's JPEG quality 70. Text-like blocks go as PNG and are exact; the
error comes from the photo-like half (measured 1.94 on this pattern)."""

TILE = 64
"""The pipeline's change-detection tile (``agent.screen.tiles.DEFAULT_TILE``)."""


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


def _pointer(display: str) -> tuple[int, int]:
    out = dict(part.split(":") for part in xdotool(display, "getmouselocation").split())
    return int(out["x"]), int(out["y"])


def _client(broker: BrokerProcess) -> HelpdeskClient:
    return HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem")


@dataclass
class Live:
    op: HelpdeskClient
    support: SupportProcess
    session: str


@contextlib.asynccontextmanager
async def _session(
    broker: BrokerProcess,
    tmp_path: Path,
    env: dict[str, str],
    *agent_args: str,
    scopes: list[str],
    answer: str,
    granted: Callable[[SessionState], bool],
) -> AsyncIterator[Live]:
    """An enrolled agent asks for support, an operator claims it, the subscriber answers the
    consent prompt with ``answer``, the operator watches; yields once ``granted(state)``."""
    enrolled_agent(broker, tmp_path / "agent", "C-X11")
    account = add_operator(broker, "alice")
    support = start_support(tmp_path / "agent", *agent_args, env=env)
    try:
        code = support.support_code()
        async with _client(broker) as op:
            await login(op, account)
            session = (await op.claim(code=code, scopes=scopes)).session_id
            support.wait_for("View your screen")
            support.type(answer)
            if answer == "a" and "input:control" in scopes:
                confirm_control(support)
            await op.watch(session)
            await op.wait_state(session, granted)
            yield Live(op, support, session)
    finally:
        support.stop()


def _x_env(display: str) -> dict[str, str]:
    # These tests compare every captured pixel: no "being watched" window on top (test_consent_*).
    env = child_env(DISPLAY=display, AGENT_INDICATOR="off")
    env.pop("WAYLAND_DISPLAY", None)
    return env


async def _next_frame(op: HelpdeskClient, timeout: float = 30.0) -> bytes:
    return await asyncio.wait_for(op.screen.get(), timeout)


async def _until_keyframe(op: HelpdeskClient, canvas: Canvas) -> ScreenUpdate:
    return (await _until_keyframe_sized(op, canvas))[0]


async def _until_keyframe_sized(op: HelpdeskClient, canvas: Canvas) -> tuple[ScreenUpdate, int]:
    """Apply updates until a keyframe; returns it and its size on the wire."""
    while True:
        data = await _next_frame(op)
        update = canvas.apply(data)
        if update.keyframe:
            return update, len(data)


def _drain(op: HelpdeskClient) -> int:
    n = 0
    while not op.screen.empty():
        op.screen.get_nowait()
        n += 1
    return n


# -- (a) + (b): exact pixels on the lossless path, and only the tiles that changed --------------------


@pytest.mark.x11
@pytest.mark.e2e
async def test_lossless_screen_is_exact_and_a_corner_change_sends_only_its_tiles(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    drawn = two_kind_picture(WIDTH, HEIGHT, seed=3)
    with draw_pattern(display, Image.fromarray(drawn)):
        async with _session(
            broker,
            tmp_path,
            _x_env(display),
            "--lossless",
            scopes=["screen:view"],
            answer="a",
            granted=lambda s: s.scopes.get("screen:view") == "granted",
        ) as live:
            layout = await live.op.next_event(MonitorLayout)
            assert isinstance(layout, MonitorLayout)
            assert layout.current == 1
            assert [(m.index, m.width, m.height) for m in layout.monitors] == [
                (0, WIDTH, HEIGHT),
                (1, WIDTH, HEIGHT),
            ]

            # (a) The real screen, captured by the agent, decodes to exactly the drawn pixels.
            canvas = Canvas()
            key, key_bytes = await _until_keyframe_sized(live.op, canvas)
            assert (key.width, key.height, key.monitor) == (WIDTH, HEIGHT, 1)
            assert all(r.encoding is not Encoding.JPEG for r in key.rects)
            assert canvas.pixels is not None
            assert np.array_equal(canvas.pixels, drawn)

            # Let the screen settle: a keep-alive (an empty update) means nothing is in flight.
            while True:
                data = await _next_frame(live.op)
                update = canvas.apply(data)
                if update.keyframe:
                    key_bytes = max(key_bytes, len(data))
                if not update.rects:
                    break
            assert np.array_equal(canvas.pixels, drawn)

            # (b) A change in one corner: a 40x30 patch at the bottom-right.
            corner = np.zeros((30, 40, 3), dtype=np.uint8)
            corner[::2, ::2] = (255, 0, 0)
            expected = drawn.copy()
            expected[-30:, -40:] = corner
            # 640x400 with 64-px tiles: the corner tile is 64 wide and 16 high (400 = 6*64 + 16);
            # the 30-px-high patch also reaches into the tile above it.
            tile_box = (WIDTH - TILE, 320, TILE, HEIGHT - 320)
            sent: list[int] = []
            with draw_pattern(display, Image.fromarray(corner), x=WIDTH - 40, y=HEIGHT - 30):
                deadline = time.monotonic() + 20
                while not np.array_equal(canvas.pixels, expected):
                    assert time.monotonic() < deadline, "the corner change never arrived"
                    data = await _next_frame(live.op)
                    update = canvas.apply(data)
                    if not update.rects:
                        continue
                    assert not update.keyframe
                    sent.append(len(data))
                    area = 0
                    for r in update.rects:
                        # Every rect lies inside the tiles the patch touches.
                        assert r.x >= tile_box[0], (r.x, r.y, r.w, r.h)
                        assert r.y >= tile_box[1], (r.x, r.y, r.w, r.h)
                        assert r.encoding is not Encoding.JPEG
                        area += r.w * r.h
                    assert area <= tile_box[2] * tile_box[3]
                    # Byte budget: headers plus at most the raw RGB of those tiles, with the
                    # worst-case deflate/PNG overhead (stored blocks: 5 bytes per 64 KiB + ~100).
                    budget = HEADER_SIZE + len(update.rects) * (RECT_HEADER_SIZE + 128) + area * 3 * 1.01
                    assert len(data) <= budget, (len(data), budget)
                    assert len(data) < key_bytes / 20, (len(data), key_bytes)
            assert sent, "no update carried the change"


# -- (a) the default (JPEG) path within its stated error ------------------------------------------------


@pytest.mark.x11
@pytest.mark.e2e
async def test_jpeg_screen_is_within_the_stated_error(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    drawn = two_kind_picture(WIDTH, HEIGHT, seed=4)
    with draw_pattern(display, Image.fromarray(drawn)):
        async with _session(
            broker,
            tmp_path,
            _x_env(display),
            scopes=["screen:view"],
            answer="a",
            granted=lambda s: s.scopes.get("screen:view") == "granted",
        ) as live:
            canvas = Canvas()
            key = await _until_keyframe(live.op, canvas)
            assert canvas.pixels is not None
            encodings = {r.encoding for r in key.rects}
            assert Encoding.JPEG in encodings  # the photo-like half took the lossy path
            error = float(np.abs(canvas.pixels.astype(int) - drawn.astype(int)).mean())
            assert error < JPEG_MAX_MEAN_ABS_ERROR, error
            # The first 256-px keyframe block is text only: PNG, exact.
            assert np.array_equal(canvas.pixels[:256, :256], drawn[:256, :256])


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
        async with _session(
            broker,
            tmp_path,
            _x_env(display),
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
        start = _pointer(display)
        assert start != TARGET

        # Without control: refused by the broker, nothing moves, nothing is clicked.
        await op.send_input(session, "button", x=TARGET[0], y=TARGET[1], button="left", action="click")
        refusal = await op.next_event(Error)
        assert isinstance(refusal, Error)
        assert refusal.code == "consent_required"
        await asyncio.sleep(0.5)
        assert _pointer(display) == start
        assert not [line for line in probe.lines() if line.startswith("click")]

        # The subscriber grants control: the click lands on the real X server.
        grant_control(live.support)
        await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
        await op.send_input(session, "button", x=TARGET[0], y=TARGET[1], button="left", action="click")
        assert probe.wait_for("click", timeout=10) == f"click 1 {TARGET[0]} {TARGET[1]}"
        assert _pointer(display) == TARGET

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
        await _next_frame(op)  # the screen is being shared

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
        assert _pointer(display) == TARGET
        assert probe.text() == "ok"
        assert not [line for line in probe.lines() if line.startswith("click")]

        # View withdrawn: the screen stops (frames already in flight may still land).
        live.support.type("/withdraw view")
        await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "withdrawn")
        await asyncio.sleep(0.5)
        _drain(op)
        await asyncio.sleep(2.5)  # longer than the 2 s keep-alive interval
        assert op.screen.empty(), "a screen update arrived after view was withdrawn"

        # Granting control again works again: withdrawal was not a broken connection.
        grant_control(live.support)
        await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
        await op.send_input(session, "move", x=TARGET[0] + 10, y=TARGET[1] + 10)
        wait_until(lambda: _pointer(display) == (TARGET[0] + 10, TARGET[1] + 10), timeout=10)


# -- (f) picking a monitor ----------------------------------------------------------------------------


@pytest.mark.x11
@pytest.mark.e2e
async def test_operator_picks_a_monitor(broker: BrokerProcess, display: str, tmp_path: Path) -> None:
    """monitor_layout → screen_refresh(monitor=n) → updates of monitor n and a new layout.

    Xvfb cannot show two side-by-side monitors to mss (docs/screen-sharing.md, "Testing"), so the
    choice here is between 0 (all monitors) and 1 (the first); both cover this one screen, and the
    monitor byte of every update says which one is being sent.
    """
    drawn = two_kind_picture(WIDTH, HEIGHT, seed=5)
    with draw_pattern(display, Image.fromarray(drawn)):
        async with _session(
            broker,
            tmp_path,
            _x_env(display),
            "--lossless",
            scopes=VIEW_AND_CONTROL,
            answer="a",
            granted=lambda s: s.scopes.get("input:control") == "granted",
        ) as live:
            op, session = live.op, live.session
            layout = await op.next_event(MonitorLayout)
            assert isinstance(layout, MonitorLayout)
            assert layout.current == 1
            assert {m.index for m in layout.monitors} == {0, 1}
            canvas = Canvas()
            assert (await _until_keyframe(op, canvas)).monitor == 1

            await op.refresh(session, monitor=0)
            switched = await op.next_event(MonitorLayout)
            assert isinstance(switched, MonitorLayout)
            assert switched.current == 0
            while True:
                update = canvas.apply(await _next_frame(op))
                if update.monitor == 0:
                    break
            if not update.keyframe:
                update = await _until_keyframe(op, canvas)
            assert update.monitor == 0
            assert canvas.pixels is not None
            assert np.array_equal(canvas.pixels, drawn)
            # Input follows the shared monitor: coordinates are relative to monitor 0 now.
            await op.send_input(session, "move", x=33, y=44)
            wait_until(lambda: _pointer(display) == (33, 44), timeout=10, what="pointer on monitor 0")

            # A monitor that does not exist is ignored: sharing goes on with monitor 0.
            await op.refresh(session, monitor=7)
            await asyncio.sleep(0.5)
            _drain(op)
            later = canvas.apply(await _next_frame(op))
            assert later.monitor == 0


# -- (e) no display: says so, and still serves chat ----------------------------------------------------


def _headless_env() -> dict[str, str]:
    env = child_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


@pytest.mark.e2e
async def test_without_a_display_request_support_says_so_and_serves_chat(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    async with _session(
        broker,
        tmp_path,
        _headless_env(),
        scopes=VIEW_AND_CONTROL,
        answer="a",
        granted=lambda s: s.scopes.get("screen:view") == "granted",
    ) as live:
        op, session = live.op, live.session
        out = live.support.output.text()
        assert "No display: screen sharing is not available (chat and inventory only)." in out
        assert out.index("No display") < out.index("Support code")
        assert "Traceback" not in out

        await op.chat(session, "画面は見えませんが、お手伝いします")
        live.support.wait_for("画面は見えませんが、お手伝いします")
        live.support.type("ルーターのランプが赤です")
        while True:
            chat = await op.next_event(Chat)
            assert isinstance(chat, Chat)
            if chat.sender == "subscriber":
                break
        assert chat.text == "ルーターのランプが赤です"
        await op.refresh(session)
        await asyncio.sleep(1.0)
        assert op.screen.empty()  # nothing to show, and nothing pretends otherwise

        live.support.type("/end")
        await op.wait_state(session, lambda s: s.phase == "ended")
        assert live.support.proc.wait(30) == 0


@pytest.mark.e2e
def test_without_a_display_run_stays_connected(
    broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m agent run`` needs no display at all: it connects and stays connected."""
    serial = enrolled_agent(broker, tmp_path / "agent", "C-HEADLESS")
    monkeypatch.delenv("DISPLAY", raising=False)  # start_agent() passes on our environment
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    agent = start_agent(tmp_path / "agent")
    try:
        wait_until(lambda: broker.agent_state(serial) == "online", timeout=30, what="agent online")
        assert agent.proc.poll() is None
        assert "Traceback" not in agent.output.text()
    finally:
        agent.stop()


# -- the sharer survives a failed grab (in process, no X needed) ------------------------------------


async def test_sharer_survives_a_failed_grab_and_falls_back_to_monitor_1() -> None:
    from agent.screen.capture import Frame, MonitorNotFound
    from agent.sharing import ScreenSharer, TestPatternSource

    class Flaky(TestPatternSource):
        __test__ = False
        fail = 1
        picked: list[int] = []  # noqa: RUF012 - one instance per test

        def select(self, index: int) -> None:
            self.picked.append(index)

        def grab(self) -> Frame:
            if self.fail:
                self.fail -= 1
                raise MonitorNotFound("monitor 2 does not exist (1 monitors)")
            return TestPatternSource.grab(self)

    sent: list[bytes] = []
    announced: list[int] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    async def on_monitor(index: int) -> None:
        announced.append(index)

    source = Flaky(width=64, height=32)
    sharer = ScreenSharer(source, send, on_monitor=on_monitor, retry_delay=0.01)
    sharer.start()
    try:
        wait = asyncio.get_running_loop().time() + 10
        while not sent:
            assert asyncio.get_running_loop().time() < wait
            await asyncio.sleep(0.01)
    finally:
        await sharer.stop()
    assert sharer.capture_errors == 1
    assert source.picked == [1]
    assert announced == [1]
    assert sharer.pipeline.lossless  # the test pattern goes lossless by default
