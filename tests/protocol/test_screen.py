"""The binary screen-update format: round trips, the documented bytes, every malformed case."""

from __future__ import annotations

import struct

import pytest

from protocol.errors import InvalidField, MalformedMessage, MessageTooLarge, UnsupportedVersion
from protocol.screen import (
    FLAG_KEYFRAME,
    HEADER_SIZE,
    RECT_HEADER_SIZE,
    Encoding,
    FrameKind,
    Rect,
    ScreenUpdate,
    decode_update,
    encode_update,
    peek_header,
)


def _update(**overrides: object) -> ScreenUpdate:
    fields: dict[str, object] = {
        "seq": 7,
        "width": 1920,
        "height": 1080,
        "keyframe": False,
        "monitor": 2,
        "rects": (
            Rect(x=0, y=0, w=64, h=64, encoding=Encoding.PNG, payload=b"\x89PNG fake"),
            Rect(x=1856, y=1016, w=64, h=64, encoding=Encoding.JPEG, payload=b"\xff\xd8 fake"),
            Rect(x=100, y=200, w=3, h=1, encoding=Encoding.RAW_RGB_ZLIB, payload=b""),
        ),
    }
    fields.update(overrides)
    return ScreenUpdate(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    update = _update()
    assert decode_update(encode_update(update)) == update


def test_round_trip_keyframe_and_keepalive() -> None:
    key = _update(keyframe=True, seq=0xFFFF_FFFF, monitor=0)
    assert decode_update(encode_update(key)) == key
    keepalive = ScreenUpdate(seq=1, width=1, height=1)
    data = encode_update(keepalive)
    assert len(data) == HEADER_SIZE
    decoded = decode_update(data)
    assert decoded == keepalive
    assert decoded.is_keepalive


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_update(_update())
    assert decode_update(bytearray(data)) == decode_update(memoryview(data)) == _update()


def test_documented_layout() -> None:
    """The bytes of docs/screen-format.md's worked example."""
    update = ScreenUpdate(
        seq=258,
        width=1280,
        height=800,
        keyframe=True,
        monitor=1,
        rects=(Rect(x=16, y=32, w=64, h=48, encoding=Encoding.PNG, payload=b"\xaa\xbb\xcc"),),
    )
    expected = bytes.fromhex("01 01 01 01 00000102 0500 0320 0001 0010 0020 0040 0030 02 00000003 aabbcc")
    assert encode_update(update) == expected
    assert HEADER_SIZE == 14
    assert RECT_HEADER_SIZE == 13


def test_peek_header() -> None:
    data = encode_update(_update(keyframe=True, seq=12345))
    assert peek_header(data) == (FrameKind.SCREEN_UPDATE, FLAG_KEYFRAME, 12345)
    assert peek_header(encode_update(_update(seq=5))).flags == 0
    with pytest.raises(MalformedMessage):
        peek_header(data[:13])
    with pytest.raises(MalformedMessage):
        peek_header(b"\x02" + data[1:])
    with pytest.raises(UnsupportedVersion):
        peek_header(data[:1] + b"\x02" + data[2:])


def _header(
    *,
    kind: int = 1,
    version: int = 1,
    flags: int = 0,
    monitor: int = 1,
    seq: int = 1,
    width: int = 100,
    height: int = 50,
    count: int = 1,
) -> bytes:
    return struct.pack(">BBBBIHHH", kind, version, flags, monitor, seq, width, height, count)


def _rect(x: int = 0, y: int = 0, w: int = 10, h: int = 10, enc: int = 2, payload: bytes = b"abc") -> bytes:
    return struct.pack(">HHHHBI", x, y, w, h, enc, len(payload)) + payload


def test_minimal_handmade_frame_decodes() -> None:
    update = decode_update(_header() + _rect())
    assert update.rects[0] == Rect(x=0, y=0, w=10, h=10, encoding=Encoding.PNG, payload=b"abc")


@pytest.mark.parametrize("cut", [0, 1, 8, 13, 14, 20, 26, 27, 28])
def test_truncated(cut: int) -> None:
    data = _header() + _rect()
    assert len(data) == 30
    with pytest.raises(MalformedMessage):
        decode_update(data[:cut])


def test_rect_count_larger_than_rects_is_truncated() -> None:
    with pytest.raises(MalformedMessage):
        decode_update(_header(count=2) + _rect())


def test_payload_length_beyond_end() -> None:
    data = _header() + struct.pack(">HHHHBI", 0, 0, 10, 10, 2, 1000) + b"abc"
    with pytest.raises(MalformedMessage):
        decode_update(data)


def test_trailing_bytes() -> None:
    with pytest.raises(MalformedMessage, match="trailing"):
        decode_update(_header() + _rect() + b"\x00")


@pytest.mark.parametrize("kind", [0x00, 0x02, 0x7F, 0xFF])
def test_unknown_kind(kind: int) -> None:
    with pytest.raises(MalformedMessage):
        decode_update(_header(kind=kind) + _rect())


def test_unknown_version() -> None:
    with pytest.raises(UnsupportedVersion):
        decode_update(_header(version=2) + _rect())


@pytest.mark.parametrize("enc", [0, 4, 255])
def test_unknown_encoding(enc: int) -> None:
    with pytest.raises(InvalidField):
        decode_update(_header() + _rect(enc=enc))


def test_reserved_flags() -> None:
    with pytest.raises(InvalidField):
        decode_update(_header(flags=0x02) + _rect())


@pytest.mark.parametrize(
    ("x", "y", "w", "h"),
    [(91, 0, 10, 10), (0, 41, 10, 10), (100, 0, 1, 1), (0, 0, 101, 1), (65535, 65535, 65535, 65535)],
)
def test_rect_outside_screen(x: int, y: int, w: int, h: int) -> None:
    with pytest.raises(InvalidField, match="outside"):
        decode_update(_header() + _rect(x=x, y=y, w=w, h=h))


def test_rect_on_the_edge_is_inside() -> None:
    assert decode_update(_header() + _rect(x=90, y=40, w=10, h=10)).rects[0].x == 90


@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, 0)])
def test_empty_rect(w: int, h: int) -> None:
    with pytest.raises(InvalidField):
        decode_update(_header() + _rect(w=w, h=h))


@pytest.mark.parametrize(("width", "height"), [(0, 50), (100, 0)])
def test_empty_screen(width: int, height: int) -> None:
    with pytest.raises(InvalidField):
        decode_update(_header(width=width, height=height, count=0))


def test_too_many_rects_checked_before_parsing() -> None:
    # 5 rects announced, none present: the limit fires before the truncation is noticed.
    with pytest.raises(MessageTooLarge):
        decode_update(_header(count=5), max_rects=4)
    decode_update(_header(count=4) + _rect() * 4, max_rects=4)


def test_default_rect_limit() -> None:
    with pytest.raises(MessageTooLarge):
        decode_update(_header(count=4097))


def test_too_many_bytes() -> None:
    data = _header() + _rect(payload=b"x" * 100)
    with pytest.raises(MessageTooLarge):
        decode_update(data, max_bytes=len(data) - 1)
    assert decode_update(data, max_bytes=len(data)).rects[0].payload == b"x" * 100


def test_default_byte_limit() -> None:
    payload = b"\x00" * (8 * 1024 * 1024)
    with pytest.raises(MessageTooLarge):
        decode_update(_header() + _rect(payload=payload))


@pytest.mark.parametrize(
    "bad",
    [
        {"seq": -1},
        {"seq": 1 << 32},
        {"width": 0},
        {"height": 65536},
        {"monitor": 256},
        {"width": True},
        {"rects": [Rect(x=0, y=0, w=1, h=1, encoding=Encoding.PNG, payload=b"")]},
        {"rects": (Rect(x=1900, y=0, w=64, h=1, encoding=Encoding.PNG, payload=b""),)},
    ],
)
def test_update_validates_itself(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidField):
        _update(**bad)


@pytest.mark.parametrize(
    "bad",
    [{"x": -1}, {"w": 0}, {"h": 65536}, {"encoding": 9}, {"payload": "text"}],
)
def test_rect_validates_itself(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"x": 0, "y": 0, "w": 1, "h": 1, "encoding": Encoding.PNG, "payload": b""}
    fields.update(bad)
    with pytest.raises(InvalidField):
        Rect(**fields)  # type: ignore[arg-type]


def test_payload_is_copied_out_of_the_buffer() -> None:
    buf = bytearray(_header() + _rect())
    update = decode_update(buf)
    buf[-1] = 0
    assert update.rects[0].payload == b"abc"


def test_update_is_frozen() -> None:
    update = _update()
    with pytest.raises(AttributeError):
        update.seq = 1  # type: ignore[misc]
