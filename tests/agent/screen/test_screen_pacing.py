"""Adaptive capture rate (issue 13): idle rate on a still screen, the fast rate for ``active_hold``
seconds after a change or an operator's input, never above what the viewer's flow control allows.
Time is an argument (a fake clock): no sleeping."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.screen.capture import Frame
from agent.screen.pipeline import FramePipeline
from agent.sharing import ScreenSharer, TestPatternSource


def _frame(value: int) -> Frame:
    px = np.full((128, 128, 4), value, dtype=np.uint8)
    return Frame(width=128, height=128, pixels=px, monitor_index=1)


def test_defaults_are_idle_15_and_active_30_for_one_second() -> None:
    pipe = FramePipeline()
    assert (pipe.idle_fps, pipe.max_fps, pipe.active_hold) == (15.0, 30.0, 1.0)


def test_still_screen_stays_at_the_idle_rate() -> None:
    pipe = FramePipeline(idle_fps=15.0, max_fps=30.0, active_hold=1.0)
    now = 0.0
    pipe.next_update(_frame(0), now=now)  # the keyframe is not activity on the screen
    for _ in range(40):
        assert pipe.capture_interval(now) == pytest.approx(1 / 15)
        now += pipe.capture_interval(now)
        pipe.next_update(_frame(0), now=now)


def test_a_change_raises_the_rate_for_active_hold_then_it_falls_back() -> None:
    pipe = FramePipeline(idle_fps=15.0, max_fps=30.0, active_hold=1.0)
    pipe.next_update(_frame(0), now=0.0)
    assert pipe.next_update(_frame(50), now=10.0) is not None  # a change at t=10
    assert pipe.capture_interval(10.0) == pytest.approx(1 / 30)
    assert pipe.capture_interval(10.99) == pytest.approx(1 / 30)
    pipe.next_update(_frame(50), now=10.5)  # nothing changed since: the hold runs from t=10
    assert pipe.capture_interval(11.0) == pytest.approx(1 / 15)
    pipe.next_update(_frame(90), now=11.2)  # another change starts a new hold
    assert pipe.capture_interval(12.1) == pytest.approx(1 / 30)
    assert pipe.capture_interval(12.2) == pytest.approx(1 / 15)


def test_operator_input_raises_the_rate_before_anything_changed() -> None:
    pipe = FramePipeline(idle_fps=15.0, max_fps=30.0, active_hold=2.0)
    assert pipe.capture_interval(5.0) == pytest.approx(1 / 15)
    pipe.note_activity(5.0)
    assert pipe.capture_interval(5.0) == pytest.approx(1 / 30)
    assert pipe.capture_interval(6.9) == pytest.approx(1 / 30)
    assert pipe.capture_interval(7.0) == pytest.approx(1 / 15)
    pipe.note_activity(6.0)
    pipe.note_activity(4.0)  # an older note never shortens the hold
    assert pipe.capture_interval(7.9) == pytest.approx(1 / 30)


def test_flow_control_caps_the_fast_rate() -> None:
    pipe = FramePipeline(idle_fps=15.0, max_fps=30.0, min_fps=1.0)
    pipe.note_activity(0.0)
    pipe.adapt(rtt=0.0, behind=True)  # the viewer falls behind: 15 fps at most
    assert pipe.capture_interval(0.1) == pytest.approx(1 / 15)
    pipe.adapt(rtt=0.0, behind=True)
    assert pipe.capture_interval(0.1) == pytest.approx(1 / 7.5)
    assert pipe.capture_interval(50.0) == pytest.approx(1 / 7.5)  # idle is never faster


def test_bad_pacing_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="idle_fps"):
        FramePipeline(idle_fps=0)
    with pytest.raises(ValueError, match="active_hold"):
        FramePipeline(active_hold=-1)


async def test_sharer_boost_cuts_the_idle_wait_short() -> None:
    """An input applied during an idle wait: the next capture comes at the fast interval."""
    clock = [100.0]
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    pipe = FramePipeline(idle_fps=0.5, max_fps=30.0, active_hold=1.0)  # idle: one capture per 2 s
    sharer = ScreenSharer(TestPatternSource(), send, pipeline=pipe, clock=lambda: clock[0])
    waiting = asyncio.create_task(sharer._pause(100.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # 2 s to go on the fake clock
    clock[0] = 100.01
    sharer.boost()
    await asyncio.wait_for(waiting, 1.0)  # 1/30 s from the start: due within ~25 ms of real time
