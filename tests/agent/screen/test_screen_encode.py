"""Per-rect encoding choice and the reference payload decoder."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from agent.screen.encode import decode_payload, encode_rect, looks_like_text
from protocol.screen import Encoding


def _photo(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: many colours, like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bgra = np.empty((h, w, 4), dtype=np.uint8)
    bgra[..., 0] = (xx * 255 // w).astype(np.uint8)
    bgra[..., 1] = (yy * 255 // h).astype(np.uint8)
    bgra[..., 2] = ((xx + yy) % 256).astype(np.uint8)
    bgra[..., :3] = np.clip(bgra[..., :3].astype(int) + rng.integers(-3, 4, (h, w, 3)), 0, 255)
    bgra[..., 3] = 255
    return bgra


def _text(h: int = 200, w: int = 300) -> np.ndarray:
    """Black strokes on white: two colours, like a document."""
    bgra = np.full((h, w, 4), 255, dtype=np.uint8)
    for row in range(10, h - 10, 16):
        for col in range(10, w - 10, 9):
            bgra[row : row + 9, col : col + 2, :3] = 0
            bgra[row + 4, col : col + 6, :3] = 0
    return bgra


def _rgb(bgra: np.ndarray) -> np.ndarray:
    return bgra[..., 2::-1]


def test_text_is_png_and_exact() -> None:
    pixels = _text()
    assert looks_like_text(pixels)
    enc, payload = encode_rect(pixels)
    assert enc is Encoding.PNG
    assert np.array_equal(decode_payload(enc, payload, 300, 200), _rgb(pixels))


def test_photo_is_jpeg_within_error() -> None:
    pixels = _photo()
    assert not looks_like_text(pixels)
    enc, payload = encode_rect(pixels, quality=85)
    assert enc is Encoding.JPEG
    decoded = decode_payload(enc, payload, 300, 200)
    assert np.abs(decoded.astype(int) - _rgb(pixels).astype(int)).mean() < 4.0


def test_lower_quality_is_smaller() -> None:
    pixels = _photo()
    assert len(encode_rect(pixels, quality=30)[1]) < len(encode_rect(pixels, quality=90)[1])


def test_lossless_never_jpeg() -> None:
    pixels = _photo()
    enc, payload = encode_rect(pixels, lossless=True)
    assert enc is not Encoding.JPEG
    assert np.array_equal(decode_payload(enc, payload, 300, 200), _rgb(pixels))


def test_tiny_rect_is_raw_zlib() -> None:
    pixels = _photo(8, 8)
    enc, payload = encode_rect(pixels)
    assert enc is Encoding.RAW_RGB_ZLIB
    assert zlib.decompress(payload) == _rgb(pixels).tobytes()
    assert np.array_equal(decode_payload(enc, payload, 8, 8), _rgb(pixels))


def test_encodes_non_contiguous_views() -> None:
    frame = _text(256, 256)
    view = frame[10:100, 20:200]
    enc, payload = encode_rect(view, lossless=True)
    assert np.array_equal(decode_payload(enc, payload, 180, 90), _rgb(view))


def test_bad_quality() -> None:
    with pytest.raises(ValueError, match="quality"):
        encode_rect(_text(), quality=0)


def test_decode_rejects_wrong_size_and_kind() -> None:
    enc, payload = encode_rect(_text())
    with pytest.raises(ValueError, match="expected"):
        decode_payload(enc, payload, 299, 200)
    with pytest.raises(ValueError, match="expected"):
        decode_payload(Encoding.JPEG, payload, 300, 200)
    raw = zlib.compress(b"\x00" * 30)
    with pytest.raises(ValueError, match="inflate"):
        decode_payload(Encoding.RAW_RGB_ZLIB, raw, 3, 3)
    with pytest.raises(ValueError, match="inflate"):
        decode_payload(Encoding.RAW_RGB_ZLIB, raw, 2, 2)
