"""``decode_payload`` on hostile payloads raises only its documented ``ValueError`` (issue 12 item 9):
random bytes, and real PNG, JPEG and raw+zlib payloads that are mutated, cut or lie about their size.
Profiles in tests/fuzzing.py; the named cases below are the ones that raised other exceptions before."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import tests.fuzzing  # noqa: F401  (loads the hypothesis profile)
from agent.screen.encode import DECODE_MAX_PIXELS, decode_payload
from protocol.screen import Encoding


def _image(fmt: str, w: int = 8, h: int = 6) -> bytes:
    out = io.BytesIO()
    pixels = (np.arange(w * h * 3, dtype=np.uint32) * 37 % 256).astype(np.uint8).reshape(h, w, 3)
    Image.fromarray(pixels, "RGB").save(out, fmt)
    return out.getvalue()


VALID = {
    Encoding.PNG: _image("PNG"),
    Encoding.JPEG: _image("JPEG"),
    Encoding.RAW_RGB_ZLIB: zlib.compress(bytes(8 * 6 * 3)),
}


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        (Encoding.PNG, b"not an image"),  # PIL.UnidentifiedImageError
        (Encoding.JPEG, VALID[Encoding.JPEG][:200]),  # truncated: OSError on load
        (Encoding.PNG, VALID[Encoding.PNG][:60]),  # truncated PNG
        (Encoding.RAW_RGB_ZLIB, b"\x78\x9c garbage"),  # zlib.error
        (Encoding.PNG, VALID[Encoding.JPEG]),  # a JPEG where a PNG belongs
    ],
)
def test_bad_payloads_raise_value_error(encoding: Encoding, payload: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_payload(encoding, payload, 8, 6)


def test_a_rect_above_the_decode_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ValueError, match="too large"):
        decode_payload(Encoding.PNG, VALID[Encoding.PNG], DECODE_MAX_PIXELS + 1, 1)


def _only_value_error(encoding: Encoding, payload: bytes, w: int, h: int) -> None:
    try:
        pixels = decode_payload(encoding, payload, w, h)
    except ValueError:
        return
    assert pixels.shape == (h, w, 3)


@given(st.sampled_from(list(Encoding)), st.binary(max_size=2048), st.integers(1, 64), st.integers(1, 64))
def test_fuzz_decode_payload_random(encoding: Encoding, payload: bytes, w: int, h: int) -> None:
    _only_value_error(encoding, payload, w, h)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Encoding, bytes]:
    encoding = draw(st.sampled_from(list(Encoding)))
    data = bytearray(VALID[encoding])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return encoding, bytes(data[:cut])


@given(mutated(), st.sampled_from([(8, 6), (6, 8), (1, 1), (64, 64)]))
def test_fuzz_decode_payload_mutated(case: tuple[Encoding, bytes], size: tuple[int, int]) -> None:
    encoding, payload = case
    _only_value_error(encoding, payload, *size)
