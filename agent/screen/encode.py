"""Per-rect encoding of BGRA pixels into the payloads of ``protocol.screen`` rects.

Choice of encoding (DESIGN §4):

* photographic content (many colours) → JPEG at the pipeline's current quality: small, and its
  artefacts are invisible in photos and video;
* text-like content (few colours: UI, terminals, documents) → PNG, which keeps glyph edges sharp
  and is usually smaller than JPEG there; when the rect is small both are tried and the smaller
  wins, because the colour-count heuristic is only a guess;
* raw RGB + zlib → the lossless fallback: tiny rects (PNG's ~60 bytes of chunk overhead matter),
  and any receiver can decode it with plain inflate.

``lossless=True`` never uses JPEG (tests compare pixels exactly; an operator may ask for it to read
small print). Payload pixel order is RGB, 8 bits per channel, rows top to bottom, for all three
encodings; the alpha byte of the capture is dropped (screens are opaque).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image

from protocol.screen import Encoding

__all__ = [
    "DEFAULT_QUALITY",
    "bgra_to_rgb",
    "decode_payload",
    "encode_rect",
    "looks_like_text",
]

DEFAULT_QUALITY = 70
"""JPEG quality: readable UI with 4:2:0 chroma, ~10x smaller than PNG on photos."""

TEXT_MAX_COLOURS = 48
"""At most this many distinct colours in the sample makes a rect "text-like" (anti-aliased text on
a flat background has a few dozen; a photo has thousands)."""

TRY_BOTH_MAX_PIXELS = 128 * 128
"""Rects up to this area are encoded both ways when the heuristic says text; larger ones trust it."""

RAW_MAX_PIXELS = 16 * 16
"""At or below this area raw+zlib is used without trying PNG (container overhead dominates)."""

_SAMPLE_PIXELS = 4096
_PNG_LEVEL = 1  # zlib level 1: 3-5x faster than the default 6 and only ~10 % larger on screens
_ZLIB_LEVEL = 6
DECODE_MAX_PIXELS = 8192 * 8192
"""Largest rect :func:`decode_payload` decodes (64 Mpixel, 192 MiB of RGB): above any real screen
(8K is 33 Mpixel), and a bound on what a hostile agent's 8 MiB payload can make a viewer allocate
(deflate inflates up to ~1000:1)."""

_DECODE_ERRORS = (
    OSError,  # PIL.UnidentifiedImageError, "image file is truncated", decoder errors
    SyntaxError,  # PIL's parsers report malformed headers as SyntaxError
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
"""What PIL and zlib raise on hostile input (found by tests/agent/screen/test_decode_fuzz.py);
:func:`decode_payload` turns each into its one documented ``ValueError``."""


def bgra_to_rgb(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Contiguous ``(h, w, 3)`` RGB copy of a ``(h, w, 4)`` BGRA array (or view)."""
    return np.ascontiguousarray(pixels[:, :, 2::-1])


def looks_like_text(pixels: npt.NDArray[np.uint8], *, max_colours: int = TEXT_MAX_COLOURS) -> bool:
    """Guess "few colours" from a strided sample of at most ~4096 pixels (cheap on any rect)."""
    words = np.ascontiguousarray(pixels).view(np.uint32).reshape(-1)
    step = max(1, words.size // _SAMPLE_PIXELS)
    return int(np.unique(words[::step] & 0x00FFFFFF).size) <= max_colours


def _png(rgb: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def _jpeg(rgb: npt.NDArray[np.uint8], quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _raw(rgb: npt.NDArray[np.uint8]) -> bytes:
    return zlib.compress(rgb.tobytes(), _ZLIB_LEVEL)


def encode_rect(
    pixels: npt.NDArray[np.uint8], *, quality: int = DEFAULT_QUALITY, lossless: bool = False
) -> tuple[Encoding, bytes]:
    """Encode one ``(h, w, 4)`` BGRA rect; returns the encoding chosen and the payload."""
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality {quality} is outside 1..95")
    height, width = pixels.shape[0], pixels.shape[1]
    area = height * width
    rgb = bgra_to_rgb(pixels)
    if area <= RAW_MAX_PIXELS:
        return Encoding.RAW_RGB_ZLIB, _raw(rgb)
    if lossless:
        png = _png(rgb)
        if area <= TRY_BOTH_MAX_PIXELS:
            raw = _raw(rgb)
            if len(raw) < len(png):
                return Encoding.RAW_RGB_ZLIB, raw
        return Encoding.PNG, png
    if not looks_like_text(pixels):
        return Encoding.JPEG, _jpeg(rgb, quality)
    png = _png(rgb)
    if area <= TRY_BOTH_MAX_PIXELS:
        jpeg = _jpeg(rgb, quality)
        if len(jpeg) < len(png):
            return Encoding.JPEG, jpeg
    return Encoding.PNG, png


def decode_payload(encoding: Encoding, payload: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Reference decoder: payload → ``(height, width, 3)`` RGB array.

    What a viewer does with each rect; the tests use it for round trips and third-party consoles
    can check their decoder against it. Any payload that is not a valid image of exactly this size
    and encoding raises ``ValueError`` and nothing else (the payload comes from another machine:
    a hostile agent must not crash an operator's client); rects above :data:`DECODE_MAX_PIXELS`
    are refused before any decoding.
    """
    if width <= 0 or height <= 0 or width * height > DECODE_MAX_PIXELS:
        raise ValueError(f"rect of {width}x{height} pixels is empty or too large to decode")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(encoding, payload, width, height)
    except _DECODE_ERRORS as exc:
        if isinstance(exc, ValueError):
            raise
        name = getattr(encoding, "name", encoding)
        raise ValueError(f"undecodable payload ({type(exc).__name__}), expected {name}") from exc


def _decode(encoding: Encoding, payload: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
    if encoding is Encoding.RAW_RGB_ZLIB:
        expected = width * height * 3
        inflater = zlib.decompressobj()
        data = inflater.decompress(payload, expected)
        if len(data) != expected or inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("raw payload does not inflate to exactly width*height*3 bytes")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    if encoding not in (Encoding.JPEG, Encoding.PNG):
        raise ValueError(f"unknown encoding {encoding!r}")
    expected_format = "JPEG" if encoding is Encoding.JPEG else "PNG"
    with Image.open(io.BytesIO(payload), formats=(expected_format,)) as img:
        if img.format != expected_format or img.size != (width, height):
            raise ValueError(
                f"payload is {img.format} {img.size}, expected {expected_format} {(width, height)}"
            )
        pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if pixels.shape != (height, width, 3):
        raise ValueError(f"payload decoded to {pixels.shape}, expected {(height, width, 3)}")
    return pixels
