"""Screen sharing without a display: the agent says so and still serves chat; the sharer survives a
failed grab and falls back to monitor 1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from protocol.messages import Chat
from tests.e2e.screen_sessions import (
    VIEW_AND_CONTROL,
    live_session,
)
from tests.helpers import (
    BrokerProcess,
    child_env,
    enrolled_agent,
    start_agent,
    wait_until,
)

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
    async with live_session(
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
