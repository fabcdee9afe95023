"""FramePipeline on synthetic frames: keyframes, changed tiles only, keep-alives, adaptation."""

from __future__ import annotations

import numpy as np
import pytest

from agent.screen.capture import Frame
from agent.screen.encode import decode_payload
from agent.screen.pipeline import FramePipeline
from protocol.screen import decode_update, encode_update


def _frame(pixels: np.ndarray, monitor_index: int = 1) -> Frame:
    h, w = pixels.shape[:2]
    return Frame(width=w, height=h, pixels=pixels, monitor_index=monitor_index)


def _pattern(h: int = 300, w: int = 400) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.zeros((h, w, 4), dtype=np.uint8)
    px[..., 0] = (xx // 7 % 2) * 200
    px[..., 1] = (yy // 5 % 3) * 100
    px[..., 2] = 30
    return px


def _apply(screen: np.ndarray, data: bytes) -> None:
    """What a viewer does: paint each decoded rect into its RGB copy of the screen."""
    update = decode_update(data)
    for r in update.rects:
        screen[r.y : r.y + r.h, r.x : r.x + r.w] = decode_payload(r.encoding, r.payload, r.w, r.h)


def test_first_frame_is_a_keyframe_and_exact() -> None:
    pipe = FramePipeline(lossless=True)
    px = _pattern()
    update = pipe.next_update(_frame(px, monitor_index=2), now=0.0)
    assert update is not None
    assert update.keyframe
    assert update.monitor == 2
    assert (update.width, update.height, update.seq) == (400, 300, 0)
    assert sum(r.w * r.h for r in update.rects) == 400 * 300
    screen = np.zeros((300, 400, 3), dtype=np.uint8)
    _apply(screen, encode_update(update))
    assert np.array_equal(screen, px[..., 2::-1])


def test_only_changed_tiles_then_static_then_keepalive() -> None:
    pipe = FramePipeline(lossless=True, keepalive_interval=2.0)
    px = _pattern()
    screen = np.zeros((300, 400, 3), dtype=np.uint8)
    first = pipe.next_update(_frame(px), now=0.0)
    assert first is not None
    _apply(screen, encode_update(first))

    changed = px.copy()
    changed[290:300, 390:400] = 255
    update = pipe.next_update(_frame(changed), now=0.1)
    assert update is not None
    assert not update.keyframe
    assert [(r.x, r.y, r.w, r.h) for r in update.rects] == [(384, 256, 16, 44)]
    _apply(screen, encode_update(update))
    assert np.array_equal(screen, changed[..., 2::-1])

    assert pipe.next_update(_frame(changed.copy()), now=1.0) is None
    assert pipe.next_update(_frame(changed.copy()), now=2.09) is None
    keepalive = pipe.next_update(_frame(changed.copy()), now=2.1)
    assert keepalive is not None
    assert keepalive.rects == ()
    assert not keepalive.keyframe
    assert keepalive.seq == 2
    assert pipe.next_update(_frame(changed.copy()), now=3.0) is None


def test_full_and_resize_give_keyframes() -> None:
    pipe = FramePipeline()
    px = _pattern()
    pipe.next_update(_frame(px), now=0.0)
    full = pipe.next_update(_frame(px), now=0.1, full=True)
    assert full is not None
    assert full.keyframe
    resized = pipe.next_update(_frame(_pattern(200, 200)), now=0.2)
    assert resized is not None
    assert resized.keyframe
    assert (resized.width, resized.height) == (200, 200)
    pipe.reset()
    again = pipe.next_update(_frame(_pattern(200, 200)), now=0.3)
    assert again is not None
    assert again.keyframe


def test_keyframe_is_cut_into_blocks() -> None:
    pipe = FramePipeline(keyframe_block=256)
    update = pipe.next_update(_frame(_pattern()), now=0.0)
    assert update is not None
    assert [(r.x, r.y, r.w, r.h) for r in update.rects] == [
        (0, 0, 256, 256),
        (256, 0, 144, 256),
        (0, 256, 256, 44),
        (256, 256, 144, 44),
    ]


def test_adapt_backs_off_fast_and_recovers_slowly() -> None:
    pipe = FramePipeline(quality=70, max_fps=16.0, min_fps=1.0, min_quality=30)
    assert pipe.frame_interval == pytest.approx(1 / 16)
    pipe.adapt(rtt=0.05, behind=True)
    assert pipe.frame_interval == pytest.approx(1 / 8)
    assert pipe.quality == 60
    for _ in range(10):
        pipe.adapt(rtt=2.0, behind=True)
    assert pipe.frame_interval == pytest.approx(1.0)
    assert pipe.quality == 30
    pipe.adapt(rtt=2.0, behind=False)  # slow round trips: hold
    assert pipe.quality == 30
    pipe.adapt(rtt=0.05, behind=False)
    assert pipe.quality == 32
    assert pipe.frame_interval == pytest.approx(1 / 1.1)
    for _ in range(100):
        pipe.adapt(rtt=0.05, behind=False)
    assert pipe.quality == 70
    assert pipe.frame_interval == pytest.approx(1 / 16)


def test_seq_wraps() -> None:
    pipe = FramePipeline()
    pipe._seq = 0xFFFF_FFFF
    px = _pattern(64, 64)
    assert pipe.next_update(_frame(px), now=0.0) is not None
    assert pipe.seq == 0


def test_frame_is_read_only() -> None:
    px = _pattern(64, 64)
    _frame(px)
    with pytest.raises(ValueError, match="read-only"):
        px[0, 0, 0] = 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="tile"):
        FramePipeline(tile=4)
    with pytest.raises(ValueError, match="quality"):
        FramePipeline(quality=20, min_quality=30)
