"""Helpers of the end-to-end screen tests: a claimed, consented session with a watching operator,
and reading its frames."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from helpdesk import HelpdeskClient
from helpdesk.canvas import Canvas
from protocol.messages import SessionState
from protocol.screen import ScreenUpdate
from tests.helpers import (
    BrokerProcess,
    SupportProcess,
    add_operator,
    child_env,
    confirm_control,
    enrolled_agent,
    login,
    start_support,
)
from tests.x11 import xdotool

WIDTH, HEIGHT = 640, 400
VIEW_AND_CONTROL = ["screen:view", "input:control"]


def pointer(display: str) -> tuple[int, int]:
    out = dict(part.split(":") for part in xdotool(display, "getmouselocation").split())
    return int(out["x"]), int(out["y"])


def operator_client(broker: BrokerProcess) -> HelpdeskClient:
    return HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem")


@dataclass
class Live:
    op: HelpdeskClient
    support: SupportProcess
    session: str


@contextlib.asynccontextmanager
async def live_session(
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
        async with operator_client(broker) as op:
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


def x_env(display: str) -> dict[str, str]:
    # These tests compare every captured pixel: no "being watched" window on top (test_consent_*).
    env = child_env(DISPLAY=display, AGENT_INDICATOR="off")
    env.pop("WAYLAND_DISPLAY", None)
    return env


async def next_frame(op: HelpdeskClient, timeout: float = 30.0) -> bytes:
    return await asyncio.wait_for(op.screen.get(), timeout)


async def until_keyframe(op: HelpdeskClient, canvas: Canvas) -> ScreenUpdate:
    return (await until_keyframe_sized(op, canvas))[0]


async def until_keyframe_sized(op: HelpdeskClient, canvas: Canvas) -> tuple[ScreenUpdate, int]:
    """Apply updates until a keyframe; returns it and its size on the wire."""
    while True:
        data = await next_frame(op)
        update = canvas.apply(data)
        if update.keyframe:
            return update, len(data)


def drain_frames(op: HelpdeskClient) -> int:
    n = 0
    while not op.screen.empty():
        op.screen.get_nowait()
        n += 1
    return n
