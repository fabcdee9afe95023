"""The relay's per-connection queue: bounded bytes, control first and in order, latest screen wins."""

from __future__ import annotations

import pytest

from broker.relay import OutboundQueue, QueueOverflow, ScreenPush, Sender


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


class RecordingSink:
    """Stands in for the connection: records frames and lets the test say when it pushes back."""

    def __init__(self) -> None:
        self.writable = True
        self.frames: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    def send_text(self, text: str) -> bool:
        self.frames.append(text)
        return True

    def send_binary(self, data: bytes) -> bool:
        self.frames.append(data)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def test_sender_writes_at_once_and_keeps_no_queue_while_the_transport_takes_data() -> None:
    sink = RecordingSink()
    sender = Sender(sink)
    sender.send_control("a")
    assert sender.send_screen(b"k", keyframe=True) is ScreenPush.QUEUED
    assert sink.frames == ["a", b"k"]
    assert sender.queue is None  # an idle agent never pays for one
    assert sender.bytes_sent == 2


def test_sender_queues_while_pushed_back_then_sends_control_first() -> None:
    sink = RecordingSink()
    sender = Sender(sink)
    sink.writable = False
    sender.send_screen(b"s1", keyframe=True)
    sender.send_control("c1")
    sender.send_screen(b"s2", keyframe=False)
    assert sink.frames == []
    assert sender.queued_bytes == 6
    sink.writable = True
    sender.pump()
    assert sink.frames == ["c1", b"s1", b"s2"]
    assert sender.queued_bytes == 0


def test_sender_drops_deltas_until_a_keyframe_once_behind() -> None:
    sink = RecordingSink()
    sender = Sender(sink, max_screen_bytes=4)
    sink.writable = False
    assert sender.send_screen(b"123", keyframe=True) is ScreenPush.QUEUED
    assert sender.send_screen(b"45", keyframe=False) is ScreenPush.BEHIND
    sink.writable = True
    sender.pump()
    # The transport takes data again, but a delta without its keyframe is useless: still dropped.
    assert sender.send_screen(b"6", keyframe=False) is ScreenPush.DROPPED
    assert sender.send_screen(b"K", keyframe=True) is ScreenPush.QUEUED
    assert sender.send_screen(b"7", keyframe=False) is ScreenPush.QUEUED
    assert sink.frames == [b"K", b"7"]


def test_sender_closes_a_peer_that_does_not_read_control_frames() -> None:
    sink = RecordingSink()
    sender = Sender(sink, max_control_bytes=10)
    sink.writable = False
    sender.send_control("x" * 8)
    sender.send_control("y" * 8)
    assert sink.closed == (1008, "too_slow")
    sender.send_control("after")  # ignored once closed
    assert sink.frames == []


def test_sender_close_after_waits_for_what_is_queued() -> None:
    sink = RecordingSink()
    sender = Sender(sink)
    sink.writable = False
    sender.send_control("error")
    sender.close_after(1008, "cert_revoked")
    assert sink.closed is None
    sender.send_control("late")  # nothing is sent after a close was asked for
    sink.writable = True
    sender.pump()
    assert sink.frames == ["error"]
    assert sink.closed == (1008, "cert_revoked")
