"""The console's screen decoder (broker/static/js/screen.js) on frames built by protocol/screen.py.

The page imports its own module, paints the frames into its offscreen canvas and hands back the
pixels: lossless rects (PNG, raw RGB + zlib) must match exactly, JPEG within a tolerance. Bad
frames must be refused with the same stable codes as ``protocol.screen.decode_update``.
"""

from __future__ import annotations

import base64
import io
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page

from protocol.errors import ProtocolError
from protocol.screen import Encoding, Rect, ScreenUpdate, decode_update, encode_update

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 96, 64

RUN_FRAMES = """
async (frames) => {
  const m = await import("/js/screen.js");
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const sc = new m.ScreenCanvas();
  const errors = [];
  for (const f of frames) {
    try { await sc.apply(bytes(f)); } catch (e) { errors.push(e.code || String(e)); }
  }
  return {
    width: sc.width, height: sc.height, keyframes: sc.keyframes, updates: sc.updates,
    needsKeyframe: sc.needsKeyframe, errors,
    pixels: sc.width ? btoaBytes(sc.pixels()) : "",
  };
  function btoaBytes(u8) {
    let s = "";
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
    return btoa(s);
  }
}
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pattern(w: int, h: int, seed: int) -> npt.NDArray[np.uint8]:
    """RGB with every pixel different-ish: gradients, a grid and a seed-dependent channel."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = (x * 255 // max(1, w - 1)).astype(np.uint8)
    rgb[..., 1] = (y * 255 // max(1, h - 1)).astype(np.uint8)
    rgb[..., 2] = ((x * 7 + y * 13 + seed * 31) % 256).astype(np.uint8)
    rgb[::8, :, :] = 255
    return rgb


def _png(rgb: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(rgb: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _raw(rgb: npt.NDArray[np.uint8]) -> bytes:
    return zlib.compress(rgb.tobytes(), 6)


def _run(page: Page, frames: list[bytes]) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(RUN_FRAMES, [_b64(f) for f in frames])
    return result


def _pixels(result: dict[str, Any]) -> npt.NDArray[np.uint8]:
    raw = base64.b64decode(result["pixels"])
    return np.frombuffer(raw, dtype=np.uint8).reshape(result["height"], result["width"], 4)


@pytest.fixture
def page(browser: BrowserContext, origin: str) -> Page:
    page = browser.new_page()
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")
    return page


def test_png_raw_and_jpeg_rects_paint_the_known_picture(page: Page) -> None:
    left = _pattern(48, 32, 1)
    right = _pattern(48, 32, 2)
    # JPEG: smooth content so the tolerance can be tight.
    y, x = np.mgrid[0:32, 0:96]
    bottom = np.stack([x * 2, y * 6, np.full_like(x, 120)], axis=-1).astype(np.uint8)
    keyframe = ScreenUpdate(
        seq=7,
        width=WIDTH,
        height=HEIGHT,
        keyframe=True,
        monitor=1,
        rects=(
            Rect(x=0, y=0, w=48, h=32, encoding=Encoding.PNG, payload=_png(left)),
            Rect(x=48, y=0, w=48, h=32, encoding=Encoding.RAW_RGB_ZLIB, payload=_raw(right)),
            Rect(x=0, y=32, w=96, h=32, encoding=Encoding.JPEG, payload=_jpeg(bottom)),
        ),
    )
    patch = _pattern(8, 8, 3)
    delta = ScreenUpdate(
        seq=8,
        width=WIDTH,
        height=HEIGHT,
        monitor=1,
        rects=(Rect(x=4, y=4, w=8, h=8, encoding=Encoding.RAW_RGB_ZLIB, payload=_raw(patch)),),
    )
    keepalive = ScreenUpdate(seq=9, width=WIDTH, height=HEIGHT, monitor=1)

    result = _run(page, [encode_update(keyframe), encode_update(delta), encode_update(keepalive)])
    assert result["errors"] == []
    assert (result["width"], result["height"]) == (WIDTH, HEIGHT)
    assert result["keyframes"] == 1
    assert result["updates"] == 3
    assert result["needsKeyframe"] is False
    pixels = _pixels(result)
    assert (pixels[..., 3] == 255).all()
    rgb = pixels[..., :3]

    expected_left = left.copy()
    expected_left[4:12, 4:12] = patch
    assert np.array_equal(rgb[0:32, 0:48], expected_left)  # PNG + raw patch: exact
    assert np.array_equal(rgb[0:32, 48:96], right)  # raw + zlib: exact
    diff = np.abs(rgb[32:64].astype(int) - bottom.astype(int))
    assert diff.mean() < 3, diff.mean()  # JPEG: lossy, close
    assert diff.max() < 40, diff.max()


def test_a_gap_in_sequence_numbers_asks_for_a_keyframe(page: Page) -> None:
    solid = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    key = ScreenUpdate(
        seq=2**32 - 1,
        width=WIDTH,
        height=HEIGHT,
        keyframe=True,
        rects=(Rect(x=0, y=0, w=WIDTH, h=HEIGHT, encoding=Encoding.PNG, payload=_png(solid)),),
    )
    next_after_wrap = ScreenUpdate(seq=0, width=WIDTH, height=HEIGHT)
    result = _run(page, [encode_update(key), encode_update(next_after_wrap)])
    assert result["needsKeyframe"] is False  # 2**32-1 → 0 is the next number (RFC 1982)
    gap = ScreenUpdate(seq=5, width=WIDTH, height=HEIGHT)
    result = _run(page, [encode_update(key), encode_update(gap)])
    assert result["needsKeyframe"] is True


def _corrupt_frames() -> dict[str, bytes]:
    rgb = _pattern(4, 4, 0)
    good = encode_update(
        ScreenUpdate(
            seq=1,
            width=8,
            height=8,
            keyframe=True,
            rects=(Rect(x=0, y=0, w=4, h=4, encoding=Encoding.RAW_RGB_ZLIB, payload=_raw(rgb)),),
        )
    )
    unknown_encoding = bytearray(good)
    unknown_encoding[14 + 8] = 9
    outside = bytearray(good)
    outside[14 + 0 : 14 + 2] = (6).to_bytes(2, "big")
    reserved_flag = bytearray(good)
    reserved_flag[2] = 0x03
    return {
        "truncated": good[:-3],
        "trailing": good + b"\x00",
        "short": good[:10],
        "kind": b"\x02" + good[1:],
        "version": good[:1] + b"\x02" + good[2:],
        "unknown_encoding": bytes(unknown_encoding),
        "outside": bytes(outside),
        "reserved_flag": bytes(reserved_flag),
    }


def test_corrupt_frames_get_the_same_codes_as_the_python_decoder(page: Page) -> None:
    frames = _corrupt_frames()
    expected = []
    for data in frames.values():
        with pytest.raises(ProtocolError) as info:
            decode_update(data)
        expected.append(info.value.code.value)
    result = _run(page, list(frames.values()))
    assert dict(zip(frames, result["errors"], strict=True)) == dict(zip(frames, expected, strict=True))
    assert result["needsKeyframe"] is True


def test_payloads_that_lie_about_their_size_are_refused(page: Page) -> None:
    rgb = _pattern(8, 8, 0)
    bomb = zlib.compress(b"\x00" * (8 * 8 * 3 * 1000))  # inflates far past w*h*3
    short = zlib.compress(rgb.tobytes()[:-3])
    not_deflate = b"this is not a zlib stream at all"
    wrong_size_png = _png(_pattern(9, 8, 0))
    frames = [
        encode_update(
            ScreenUpdate(
                seq=i,
                width=8,
                height=8,
                keyframe=True,
                rects=(Rect(x=0, y=0, w=8, h=8, encoding=enc, payload=payload),),
            )
        )
        for i, (enc, payload) in enumerate(
            [
                (Encoding.RAW_RGB_ZLIB, bomb),
                (Encoding.RAW_RGB_ZLIB, short),
                (Encoding.RAW_RGB_ZLIB, not_deflate),
                (Encoding.PNG, wrong_size_png),
                (Encoding.JPEG, b"\xff\xd8 not a jpeg"),
            ]
        )
    ]
    result = _run(page, frames)
    assert result["errors"] == ["invalid_field"] * 5
    assert result["keyframes"] == 0


def test_scaling_and_canvas_to_screen_mapping(page: Page) -> None:
    result = page.evaluate(
        """async () => {
          const m = await import("/js/screen.js");
          const sc = new m.ScreenCanvas();
          sc.width = 1920; sc.height = 1080;
          const visible = document.createElement("canvas");
          sc.surface.width = 1920; sc.surface.height = 1080;
          const scale = sc.drawTo(visible, 960, 800);
          return {
            scale, w: visible.width, h: visible.height,
            centre: m.toScreenPoint(480, 270, 960, 540, 1920, 1080),
            corner: m.toScreenPoint(959.9, 539.9, 960, 540, 1920, 1080),
            outside: m.toScreenPoint(-5, 2000, 960, 540, 1920, 1080),
            upscaled: new m.ScreenCanvas().fitScale(100, 100),
          };
        }"""
    )
    assert result["scale"] == 0.5
    assert (result["w"], result["h"]) == (960, 540)
    assert result["centre"] == {"x": 960, "y": 540}
    assert result["corner"] == {"x": 1919, "y": 1079}
    assert result["outside"] == {"x": 0, "y": 1079}
