"""The relay's per-connection queue: bounded bytes, control first and in order, latest screen wins."""

from __future__ import annotations

import pytest

from broker.relay import OutboundQueue, QueueOverflow, ScreenPush


def _drain(queue: OutboundQueue) -> list[str | bytes]:
    out: list[str | bytes] = []
    while (frame := queue.pop()) is not None:
        out.append(frame)
    return out


def test_control_frames_come_first_and_in_order() -> None:
    queue = OutboundQueue()
    queue.push_screen(b"K" * 10, keyframe=True)
    for i in range(5):
        queue.push_control(f"c{i}")
    queue.push_screen(b"d" * 10, keyframe=False)
    assert _drain(queue) == ["c0", "c1", "c2", "c3", "c4", b"K" * 10, b"d" * 10]
    assert queue.queued_bytes == 0


def test_a_keyframe_replaces_stale_updates() -> None:
    queue = OutboundQueue(max_screen_bytes=1000)
    queue.push_screen(b"a" * 100, keyframe=True)
    queue.push_screen(b"b" * 100, keyframe=False)
    assert queue.push_screen(b"K" * 100, keyframe=True) is ScreenPush.REPLACED
    assert _drain(queue) == [b"K" * 100]
    assert queue.dropped_updates == 2


def test_a_viewer_that_falls_behind_waits_for_the_next_keyframe() -> None:
    queue = OutboundQueue(max_screen_bytes=250)
    assert queue.push_screen(b"k" * 100, keyframe=True) is ScreenPush.QUEUED
    assert queue.push_screen(b"1" * 100, keyframe=False) is ScreenPush.QUEUED
    assert queue.push_screen(b"2" * 100, keyframe=False) is ScreenPush.BEHIND
    assert queue.screen_bytes == 0  # deltas without their base are useless: all dropped
    assert queue.push_screen(b"3" * 10, keyframe=False) is ScreenPush.DROPPED
    assert queue.push_screen(b"K" * 100, keyframe=True) is ScreenPush.QUEUED
    assert queue.push_screen(b"4" * 10, keyframe=False) is ScreenPush.QUEUED
    assert _drain(queue) == [b"K" * 100, b"4" * 10]


def test_screen_bytes_never_exceed_the_bound() -> None:
    queue = OutboundQueue(max_screen_bytes=4096)
    for i in range(1000):
        queue.push_screen(bytes(300), keyframe=i % 50 == 0)
        assert queue.screen_bytes <= 4096


def test_control_overflow_is_an_error_not_a_drop() -> None:
    queue = OutboundQueue(max_control_bytes=100)
    queue.push_control("x" * 60)
    with pytest.raises(QueueOverflow):
        queue.push_control("y" * 60)
    assert _drain(queue) == ["x" * 60]


def test_an_oversize_keyframe_marks_the_viewer_behind() -> None:
    queue = OutboundQueue(max_screen_bytes=100)
    assert queue.push_screen(b"K" * 101, keyframe=True) is ScreenPush.BEHIND
    assert queue.needs_keyframe
    assert queue.pop() is None
