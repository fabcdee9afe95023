"""One keyframe at the start of a stream: the real agent (capturing a private Xvfb with mss) and
the real broker, the operator watching before the subscriber answers (the console's order).

The agent's core starts sharing exactly once per grant (docs/agent-core.md): the broker's
``session_state`` confirming the grant starts nothing more. What the operator receives is decoded
with :class:`helpdesk.canvas.Canvas`; the count runs from the grant up to the first frame showing a
change drawn on the X server after the stream began, so every keyframe the start of the stream
caused has arrived by then (a refresh asked earlier makes the next capture a keyframe, and that
frame is captured before the drawn change can appear).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from helpdesk import HelpdeskClient
from helpdesk.canvas import Canvas
from tests.helpers import BrokerProcess, add_operator, child_env, enrolled_agent, login, start_support
from tests.x11 import draw_pattern, two_kind_picture, xvfb

WIDTH, HEIGHT = 480, 320
MARK = (32, 32, 40, 40)
"""x, y, w, h of the square drawn once the stream has begun."""


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


def _marked(canvas: Canvas) -> bool:
    if canvas.pixels is None:
        return False
    x, y, w, h = MARK
    return bool((canvas.pixels[y : y + h, x : x + w] == (255, 0, 255)).all())


@pytest.mark.x11
@pytest.mark.e2e
async def test_the_stream_starts_with_exactly_one_keyframe(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    env = child_env(DISPLAY=display, AGENT_INDICATOR="off")
    env.pop("WAYLAND_DISPLAY", None)
    enrolled_agent(broker, tmp_path / "agent", "C-KEY")
    account = add_operator(broker, "alice")
    with draw_pattern(display, Image.fromarray(two_kind_picture(WIDTH, HEIGHT, seed=7))):
        support = start_support(tmp_path / "agent", "--lossless", env=env)
        try:
            code = support.support_code()
            async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
                await login(op, account)
                session = (await op.claim(code=code, scopes=["screen:view"])).session_id
                await op.watch(session)  # watching before the answer, as the console does
                support.wait_for("View your screen")
                support.type("a")
                await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
                canvas = Canvas()
                keyframes = 0
                while keyframes == 0:
                    update = canvas.apply(await asyncio.wait_for(op.screen.get(), 30))
                    keyframes += update.keyframe
                mark = Image.new("RGB", MARK[2:], (255, 0, 255))
                with draw_pattern(display, mark, x=MARK[0], y=MARK[1]):
                    while not _marked(canvas):
                        update = canvas.apply(await asyncio.wait_for(op.screen.get(), 30))
                        keyframes += update.keyframe
                assert keyframes == 1
                assert canvas.pixels is not None
        finally:
            support.stop()
