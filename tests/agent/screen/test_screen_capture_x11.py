"""Capture → pipeline → wire format → viewer, on a real (virtual) X screen.

A known picture is drawn with ``tests.x11.draw_pattern`` (a Tk window under Xvfb, pixel exact), so
what the viewer reconstructs can be compared with what was drawn, not only with what was captured.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from agent.screen.capture import Capturer, Frame, MonitorNotFound, NoDisplayError, list_monitors
from agent.screen.encode import decode_payload
from agent.screen.pipeline import FramePipeline
from protocol.screen import Encoding, ScreenUpdate, decode_update, encode_update
from tests.x11 import draw_pattern, two_kind_picture, xvfb

WIDTH, HEIGHT = 640, 400

JPEG_MAX_MEAN_ABS_ERROR = 3.0
"""Mean absolute error per channel (0-255) allowed on the lossy path at quality 70 over the whole
screen; text regions go as PNG and are exact, so the error comes from the photo half."""


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


def _viewer_apply(screen: np.ndarray, data: bytes) -> ScreenUpdate:
    update = decode_update(data)
    for r in update.rects:
        screen[r.y : r.y + r.h, r.x : r.x + r.w] = decode_payload(r.encoding, r.payload, r.w, r.h)
    return update


def _rgb(frame: Frame) -> np.ndarray:
    return np.asarray(frame.pixels[..., 2::-1])


@pytest.mark.x11
def test_list_monitors(display: str) -> None:
    monitors = list_monitors(display=display)
    assert monitors[0].index == 0
    assert (monitors[0].width, monitors[0].height) == (WIDTH, HEIGHT)
    assert monitors[1].index == 1
    assert (monitors[1].left, monitors[1].top, monitors[1].width, monitors[1].height) == (0, 0, WIDTH, HEIGHT)


@pytest.mark.x11
def test_unknown_monitor(display: str) -> None:
    with Capturer(9, display=display) as cap, pytest.raises(MonitorNotFound):
        cap.grab()


@pytest.mark.x11
def test_lossless_round_trip_is_exact(display: str) -> None:
    drawn = two_kind_picture(WIDTH, HEIGHT)
    with draw_pattern(display, Image.fromarray(drawn)), Capturer(1, display=display) as cap:
        frame = cap.grab()
    assert (frame.width, frame.height, frame.monitor_index) == (WIDTH, HEIGHT, 1)
    assert np.array_equal(_rgb(frame), drawn)  # capture itself is exact
    update = FramePipeline(lossless=True).next_update(frame, now=0.0)
    assert update is not None
    screen = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    decoded = _viewer_apply(screen, encode_update(update))
    assert decoded.keyframe
    assert all(r.encoding is not Encoding.JPEG for r in decoded.rects)
    assert np.array_equal(screen, drawn)


@pytest.mark.x11
def test_lossy_round_trip_within_error(display: str) -> None:
    drawn = two_kind_picture(WIDTH, HEIGHT, seed=1)
    with draw_pattern(display, Image.fromarray(drawn)), Capturer(1, display=display) as cap:
        frame = cap.grab()
    # 64-px keyframe blocks: each is either text or photo, so the encoder's choice shows.
    pipe = FramePipeline(quality=70, keyframe_block=64)
    update = pipe.next_update(frame, now=0.0)
    assert update is not None
    screen = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    _viewer_apply(screen, encode_update(update))
    error = np.abs(screen.astype(int) - drawn.astype(int)).mean()
    assert error < JPEG_MAX_MEAN_ABS_ERROR
    assert {r.encoding for r in update.rects} == {Encoding.PNG, Encoding.JPEG}
    assert np.array_equal(screen[:, :256], drawn[:, :256])  # the text blocks are exact

    # A text-only change goes as PNG and is exact; a photo-like change goes as JPEG.
    text = np.full((64, 128, 3), 255, dtype=np.uint8)
    text[20:40:4, 10:100] = 0
    with draw_pattern(display, Image.fromarray(text), x=0, y=0), Capturer(1, display=display) as cap:
        update = pipe.next_update(cap.grab(), now=0.1)
    assert update is not None
    assert {r.encoding for r in update.rects} == {Encoding.PNG}
    _viewer_apply(screen, encode_update(update))
    assert np.array_equal(screen[:64, :128], text)


@pytest.mark.x11
def test_corner_change_sends_only_nearby_tiles(display: str) -> None:
    drawn = two_kind_picture(WIDTH, HEIGHT, seed=2)
    screen = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pipe = FramePipeline(lossless=True, keepalive_interval=2.0)
    with draw_pattern(display, Image.fromarray(drawn)), Capturer(1, display=display) as cap:
        key = pipe.next_update(cap.grab(), now=0.0)
        assert key is not None
        key_bytes = len(encode_update(key))
        _viewer_apply(screen, encode_update(key))

        corner = np.zeros((30, 40, 3), dtype=np.uint8)
        corner[::2, ::2] = (255, 0, 0)
        with draw_pattern(display, Image.fromarray(corner), x=WIDTH - 40, y=HEIGHT - 30):
            frame = cap.grab()
        update = pipe.next_update(frame, now=0.1)
        assert update is not None
        data = encode_update(update)
        _viewer_apply(screen, data)
        assert np.array_equal(screen, _rgb(frame))
        assert np.array_equal(screen[-30:, -40:], corner)

        assert not update.keyframe
        assert len(update.rects) == 1
        (r,) = update.rects
        # 640x400 with 64-px tiles: the corner tile is 64 wide and 16 high (400 = 6*64 + 16), the
        # 30-px-high patch also reaches into the tile above it.
        assert (r.x, r.y, r.w, r.h) == (WIDTH - 64, 320, 64, 80)
        assert len(data) < key_bytes / 20

        # The patch is gone again (its window closed): the same tiles go back.
        back = pipe.next_update(cap.grab(), now=0.2)
        assert back is not None
        assert [(b.x, b.y, b.w, b.h) for b in back.rects] == [(r.x, r.y, r.w, r.h)]
        _viewer_apply(screen, encode_update(back))
        assert np.array_equal(screen, drawn)


@pytest.mark.x11
def test_static_screen_sends_only_keepalives(display: str) -> None:
    pipe = FramePipeline(keepalive_interval=1.0)
    drawn = Image.fromarray(two_kind_picture(WIDTH, HEIGHT, seed=3))
    with draw_pattern(display, drawn), Capturer(1, display=display) as cap:
        updates = [pipe.next_update(cap.grab(), now=t / 10) for t in range(0, 35)]
    sent = [(i / 10, u) for i, u in enumerate(updates) if u is not None]
    assert sent[0][1].keyframe
    keepalives = sent[1:]
    assert [t for t, _ in keepalives] == [1.0, 2.0, 3.0]
    assert all(u.rects == () and len(encode_update(u)) == 14 for _, u in keepalives)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 notion")
def test_no_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(NoDisplayError, match="DISPLAY") as info:
        Capturer(1).grab()
    assert "画面を取得できません" in str(info.value)
    with pytest.raises(NoDisplayError):
        list_monitors()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 notion")
def test_unreachable_display_is_a_clear_error() -> None:
    with pytest.raises(NoDisplayError):
        list_monitors(display=":4093")
