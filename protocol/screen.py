"""Binary screen-update frames (DESIGN §4), byte by byte as in ``docs/screen-format.md``.

Screen updates travel as binary WebSocket frames beside the JSON control messages. They are the
only large, frequent messages, so they get a fixed binary layout that a browser can parse with a
``DataView`` and that the broker's relay can classify by peeking at a few header bytes: the relay
keeps "latest wins" for slow viewers (DESIGN §5) and must never decode payloads to do so.

Layout (big-endian, network order)::

    offset size  field
    0      1     frame kind          0x01 = screen update; every other value is reserved
    1      1     format version      1
    2      1     flags               bit 0 = keyframe (full refresh); bits 1-7 reserved, zero
    3      1     monitor index       0 = all monitors combined, 1.. = one monitor
    4      4     sequence number     u32, session-local, wraps
    8      2     screen width        u16, pixels, >= 1
    10     2     screen height       u16, pixels, >= 1
    12     2     rect count          u16
    14     ...   rects, each: x u16, y u16, w u16, h u16, encoding u8, length u32, payload

Like the ``websockets`` frame parser this module is pure: bytes and frozen objects in, bytes and
frozen objects out. It never decompresses payloads (that is the receiver's business, and the
relay must stay cheap); ``agent/screen/encode.py`` holds the reference payload codecs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from .errors import InvalidField, MalformedMessage, MessageTooLarge, UnsupportedVersion

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_RECTS",
    "FLAG_KEYFRAME",
    "HEADER_SIZE",
    "RECT_HEADER_SIZE",
    "SCREEN_FORMAT_VERSION",
    "Encoding",
    "FrameKind",
    "PeekedHeader",
    "Rect",
    "ScreenUpdate",
    "decode_update",
    "encode_update",
    "peek_header",
]

SCREEN_FORMAT_VERSION = 1
"""Version byte of this layout. A new layout gets a new number rather than a reinterpretation."""

FLAG_KEYFRAME = 0x01
"""The update repaints the whole screen: a viewer that joined late or dropped frames can start here."""

_KNOWN_FLAGS = FLAG_KEYFRAME

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
"""Same as ``Limits.max_binary_bytes``: a full 4K frame as PNG fits."""

DEFAULT_MAX_RECTS = 4096
"""A 1920×1080 screen has 510 tiles of 64×64; 4096 leaves room for 4K and smaller tiles."""

_HEADER = struct.Struct(">BBBBIHHH")
_RECT = struct.Struct(">HHHHBI")
_PEEK = struct.Struct(">BBBBI")

HEADER_SIZE = _HEADER.size
"""14 bytes of fixed header before the first rect."""

RECT_HEADER_SIZE = _RECT.size
"""13 bytes before each rect's payload."""

_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFF_FFFF


class FrameKind(IntEnum):
    """First byte of every binary frame, so later binary messages (file chunks) share the channel.

    0x00 is never valid (it catches zero-filled buffers); 0x02-0xFF are reserved.
    """

    SCREEN_UPDATE = 0x01


class Encoding(IntEnum):
    """How one rect's payload is encoded. 0 and 4-255 are reserved.

    JPEG for photographic content, PNG (lossless) for text and flat UI, raw RGB + zlib as the
    lossless fallback a receiver can decode with nothing more than inflate (a browser's
    ``DecompressionStream("deflate")``).
    """

    JPEG = 1
    PNG = 2
    RAW_RGB_ZLIB = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Rect:
    """One changed rectangle of the screen and its encoded pixels.

    ``x``, ``y``, ``w``, ``h`` are in pixels of the shared screen (the monitor named by the update),
    origin top-left. ``w`` and ``h`` are at least 1: an empty rect carries nothing and would only
    be a place for a peer to hide bytes.
    """

    x: int
    y: int
    w: int
    h: int
    encoding: Encoding
    payload: bytes

    def __post_init__(self) -> None:
        _check_range("x", self.x, 0, _U16)
        _check_range("y", self.y, 0, _U16)
        _check_range("w", self.w, 1, _U16)
        _check_range("h", self.h, 1, _U16)
        if not isinstance(self.encoding, Encoding):
            raise InvalidField(f"rect encoding must be an Encoding, not {self.encoding!r}")
        if not isinstance(self.payload, bytes):
            raise InvalidField("rect payload must be bytes")
        if len(self.payload) > _U32:
            raise InvalidField("rect payload longer than 2**32 - 1 bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenUpdate:
    """One screen update: the rects that changed since the previous update, or all of them.

    ``monitor`` follows mss: 0 is the bounding box of all monitors, 1.. one monitor each; the
    JSON ``MonitorLayout`` message (owned by the control protocol) maps indexes to positions.
    ``seq`` is session-local and wraps at 2**32; a viewer orders by it and notices gaps.
    An update with no rects is a keep-alive: "the screen is still the same, I am still here".
    Every rect must lie inside the screen, checked here so that neither side can build one that
    the other would have to reject.
    """

    seq: int
    width: int
    height: int
    rects: tuple[Rect, ...] = ()
    keyframe: bool = False
    monitor: int = 1

    def __post_init__(self) -> None:
        _check_range("seq", self.seq, 0, _U32)
        _check_range("width", self.width, 1, _U16)
        _check_range("height", self.height, 1, _U16)
        _check_range("monitor", self.monitor, 0, _U8)
        if not isinstance(self.rects, tuple):
            raise InvalidField("rects must be a tuple")
        if len(self.rects) > _U16:
            raise InvalidField("more than 65535 rects")
        for i, r in enumerate(self.rects):
            if not isinstance(r, Rect):
                raise InvalidField(f"rects[{i}] is not a Rect")
            if r.x + r.w > self.width or r.y + r.h > self.height:
                raise InvalidField(
                    f"rects[{i}] ({r.x},{r.y} {r.w}x{r.h}) lies outside the {self.width}x{self.height} screen"
                )

    @property
    def flags(self) -> int:
        """The flags byte as sent."""
        return FLAG_KEYFRAME if self.keyframe else 0

    @property
    def is_keepalive(self) -> bool:
        return not self.rects

    @property
    def payload_bytes(self) -> int:
        """Sum of payload lengths: what the pixels cost, without framing."""
        return sum(len(r.payload) for r in self.rects)


class PeekedHeader(NamedTuple):
    """What the relay needs to decide "latest wins" without touching the payloads."""

    kind: FrameKind
    flags: int
    seq: int


def _check_range(name: str, value: int, low: int, high: int) -> None:
    # bool is an int; a True width is a bug, not a 1-pixel screen.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidField(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidField(f"{name}={value} is outside {low}..{high}")


def encode_update(update: ScreenUpdate) -> bytes:
    """Serialize ``update`` as one binary WebSocket frame.

    The object validated itself when it was built, so this cannot fail on a ``ScreenUpdate``.
    """
    parts: list[bytes] = [
        _HEADER.pack(
            FrameKind.SCREEN_UPDATE,
            SCREEN_FORMAT_VERSION,
            update.flags,
            update.monitor,
            update.seq,
            update.width,
            update.height,
            len(update.rects),
        )
    ]
    for r in update.rects:
        parts.append(_RECT.pack(r.x, r.y, r.w, r.h, r.encoding, len(r.payload)))
        parts.append(r.payload)
    return b"".join(parts)


def _check_kind_and_version(kind: int, version: int) -> FrameKind:
    if kind != FrameKind.SCREEN_UPDATE:
        raise MalformedMessage(f"unknown binary frame kind 0x{kind:02x}")
    if version != SCREEN_FORMAT_VERSION:
        raise UnsupportedVersion(f"screen format version {version} is not supported")
    return FrameKind.SCREEN_UPDATE


def peek_header(data: bytes | bytearray | memoryview) -> PeekedHeader:
    """Read kind, flags and sequence number from the first 8 bytes, in constant time.

    The relay calls this on every frame to drop stale non-keyframes for a slow viewer; it does
    not validate the rest of the frame (the viewer's ``decode_update`` does).
    """
    if len(data) < HEADER_SIZE:
        raise MalformedMessage(
            f"binary frame of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    kind, version, flags, _monitor, seq = _PEEK.unpack_from(data, 0)
    return PeekedHeader(_check_kind_and_version(kind, version), flags, seq)


def decode_update(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rects: int = DEFAULT_MAX_RECTS,
) -> ScreenUpdate:
    """Parse and validate one binary screen-update frame.

    Sizes are checked before anything is allocated (h11's bounded buffer habit): ``max_bytes``
    bounds the whole frame, ``max_rects`` the rect count announced in the header, so a hostile
    header cannot make us loop or copy more than the frame we already hold.

    Raises :class:`MessageTooLarge` over a limit, :class:`MalformedMessage` when the bytes are not
    this layout (truncated, unknown kind, trailing bytes), :class:`UnsupportedVersion` for another
    format version and :class:`InvalidField` for a value out of range (unknown encoding, reserved
    flag bits, a rect outside the screen).
    """
    view = memoryview(data).cast("B")
    size = view.nbytes
    if size > max_bytes:
        raise MessageTooLarge(f"screen update of {size} bytes exceeds the limit of {max_bytes}")
    if size < HEADER_SIZE:
        raise MalformedMessage(f"screen update of {size} bytes is shorter than the {HEADER_SIZE}-byte header")
    kind, version, flags, monitor, seq, width, height, count = _HEADER.unpack_from(view, 0)
    _check_kind_and_version(kind, version)
    if flags & ~_KNOWN_FLAGS:
        raise InvalidField(f"reserved flag bits set: 0x{flags:02x}")
    if count > max_rects:
        raise MessageTooLarge(f"screen update announces {count} rects, the limit is {max_rects}")
    if width == 0 or height == 0:
        raise InvalidField(f"screen size {width}x{height} is empty")
    offset = HEADER_SIZE
    rects: list[Rect] = []
    for i in range(count):
        if offset + RECT_HEADER_SIZE > size:
            raise MalformedMessage(f"screen update truncated in the header of rect {i}")
        x, y, w, h, enc, length = _RECT.unpack_from(view, offset)
        offset += RECT_HEADER_SIZE
        if offset + length > size:
            raise MalformedMessage(f"screen update truncated in the payload of rect {i}")
        try:
            encoding = Encoding(enc)
        except ValueError:
            raise InvalidField(f"rect {i} has unknown encoding {enc}") from None
        if w == 0 or h == 0:
            raise InvalidField(f"rect {i} is empty ({w}x{h})")
        if x + w > width or y + h > height:
            raise InvalidField(f"rect {i} ({x},{y} {w}x{h}) lies outside the {width}x{height} screen")
        rects.append(
            Rect(x=x, y=y, w=w, h=h, encoding=encoding, payload=bytes(view[offset : offset + length]))
        )
        offset += length
    if offset != size:
        raise MalformedMessage(f"{size - offset} trailing bytes after the last rect")
    return ScreenUpdate(
        seq=seq,
        width=width,
        height=height,
        rects=tuple(rects),
        keyframe=bool(flags & FLAG_KEYFRAME),
        monitor=monitor,
    )
