"""From captured frames to ``ScreenUpdate`` objects: diff, encode, keyframes, keep-alives, pacing.

Like the ``protocol`` cores this class never reads a clock: ``now`` is an argument (aioquic's
habit), so the adapter decides when to capture and tests run without sleeping. It is synchronous
and CPU-bound; the adapter calls :meth:`FramePipeline.next_update` in a worker thread.

Flow control: the broker tells the agent when a viewer falls behind (its relay drops stale frames,
DESIGN §5). :meth:`FramePipeline.adapt` answers by halving the frame rate and lowering JPEG quality
at once, and by giving both back a little at a time once the viewer keeps up, so a congested link
settles instead of oscillating (the AIMD shape of TCP congestion control, RFC 5681).

Pacing (:meth:`FramePipeline.capture_interval`): a still screen is sampled at ``idle_fps`` (15, the
rate of earlier versions, so an idle session costs no more CPU); a change on the screen or an
operator's input (:meth:`FramePipeline.note_activity`) raises the rate to ``max_fps`` (30) for
``active_hold`` seconds (1.0), since more changes follow the first (typing, a menu, a dragged
window). A change then waits at most 33 ms instead of 67 ms before it is even seen: that wait was
most of the glass-to-glass latency (docs/PERFORMANCE.md, issue 13).
"""

from __future__ import annotations

from protocol.screen import Rect, ScreenUpdate

from .capture import Frame
from .encode import DEFAULT_QUALITY, encode_rect
from .tiles import DEFAULT_TILE, RectXYWH, changed_rects

__all__ = ["FramePipeline"]

_U32 = 1 << 32


class FramePipeline:
    """Turns a stream of frames of one monitor into screen updates.

    tile:
        Edge of the change-detection tiles in pixels (64).
    quality:
        JPEG quality when the viewer keeps up (70); :meth:`adapt` lowers it down to ``min_quality``.
    lossless:
        Never use JPEG (PNG or raw+zlib only): exact pixels, more bytes.
    keepalive_interval:
        Seconds (2.0) after the last update before a static screen sends an empty update, so the
        viewer can tell "nothing changed" from "the agent is gone".
    max_fps / min_fps:
        Bounds of the capture rate the adapter should follow (:attr:`frame_interval`), 30 and 1.
        ``max_fps`` is the rate while the screen is active (see ``active_hold``).
    idle_fps:
        Capture rate while nothing changed for ``active_hold`` seconds (15): keeps an idle session's
        CPU (one grab and one tile diff per capture) where it was before pacing existed.
    active_hold:
        Seconds (1.0) the rate stays at ``max_fps`` after the last change on the screen or the last
        operator input (:meth:`note_activity`).
    min_quality:
        Lowest JPEG quality :meth:`adapt` goes to (30): below that text becomes unreadable.
    slow_rtt:
        Round-trip time in seconds (0.5) above which :meth:`adapt` holds instead of recovering.
    keyframe_block:
        Edge in pixels of the squares a keyframe is cut into (256): each block gets its own encoding
        choice (a photo beside a text window), and no single payload of a 4K screen nears the
        8 MiB frame limit.
    """

    def __init__(
        self,
        tile: int = DEFAULT_TILE,
        quality: int = DEFAULT_QUALITY,
        lossless: bool = False,
        keepalive_interval: float = 2.0,
        *,
        max_fps: float = 30.0,
        min_fps: float = 1.0,
        idle_fps: float = 15.0,
        active_hold: float = 1.0,
        min_quality: int = 30,
        slow_rtt: float = 0.5,
        keyframe_block: int = 256,
    ) -> None:
        if tile < 8:
            raise ValueError("tile must be at least 8 pixels")
        if not 1 <= min_quality <= quality <= 95:
            raise ValueError("need 1 <= min_quality <= quality <= 95")
        if not 0 < min_fps <= max_fps:
            raise ValueError("need 0 < min_fps <= max_fps")
        if idle_fps <= 0 or active_hold < 0:
            raise ValueError("idle_fps must be positive and active_hold not negative")
        if keepalive_interval <= 0 or keyframe_block < 1:
            raise ValueError("keepalive_interval and keyframe_block must be positive")
        self.tile = tile
        self.lossless = lossless
        self.keepalive_interval = keepalive_interval
        self.max_quality = quality
        self.min_quality = min_quality
        self.max_fps = max_fps
        self.min_fps = min_fps
        self.idle_fps = idle_fps
        self.active_hold = active_hold
        self._active_until = float("-inf")
        self.slow_rtt = slow_rtt
        self.keyframe_block = keyframe_block
        self._quality = quality
        self._fps = max_fps
        self._prev: Frame | None = None
        self._seq = 0
        self._last_sent: float | None = None

    @property
    def quality(self) -> int:
        """Current JPEG quality."""
        return self._quality

    @property
    def frame_interval(self) -> float:
        """Seconds the adapter should wait between captures at the current rate."""
        return 1.0 / self._fps

    def capture_interval(self, now: float) -> float:
        """Seconds to wait after a capture started at ``now``: the adaptive rate (``max_fps`` within
        ``active_hold`` of the last activity, else ``idle_fps``), never faster than :meth:`adapt`'s
        current rate allows."""
        fps = self._fps
        if now >= self._active_until:
            fps = min(fps, self.idle_fps)
        return 1.0 / fps

    def note_activity(self, now: float) -> None:
        """Something will likely change soon (operator input): capture at ``max_fps`` for a while."""
        self._active_until = max(self._active_until, now + self.active_hold)

    @property
    def seq(self) -> int:
        """Sequence number the next update will carry."""
        return self._seq

    def reset(self) -> None:
        """Forget the previous frame: the next update is a keyframe (a new viewer joined)."""
        self._prev = None

    def next_update(self, frame: Frame, *, now: float, full: bool = False) -> ScreenUpdate | None:
        """The update that brings a viewer from the previous frame to ``frame``, or None.

        The first frame, a size change and ``full=True`` give a keyframe covering the whole screen.
        Otherwise only changed tiles are sent; an unchanged screen gives None, except an empty
        keep-alive update once ``keepalive_interval`` has passed since the last update.
        """
        prev = self._prev
        keyframe = full or prev is None or prev.pixels.shape != frame.pixels.shape
        if keyframe:
            b = self.keyframe_block
            boxes = [
                (x, y, min(b, frame.width - x), min(b, frame.height - y))
                for y in range(0, frame.height, b)
                for x in range(0, frame.width, b)
            ]
        else:
            assert prev is not None
            boxes = changed_rects(prev.pixels, frame.pixels, tile=self.tile)
        self._prev = frame
        if boxes and not keyframe:
            self.note_activity(now)
        if not boxes:
            if self._last_sent is not None and now - self._last_sent < self.keepalive_interval:
                return None
            return self._emit(frame, (), keyframe=False, now=now)
        rects = tuple(self._encode(frame, box) for box in boxes)
        return self._emit(frame, rects, keyframe=keyframe, now=now)

    def _encode(self, frame: Frame, box: RectXYWH) -> Rect:
        x, y, w, h = box
        encoding, payload = encode_rect(
            frame.pixels[y : y + h, x : x + w], quality=self._quality, lossless=self.lossless
        )
        return Rect(x=x, y=y, w=w, h=h, encoding=encoding, payload=payload)

    def _emit(self, frame: Frame, rects: tuple[Rect, ...], *, keyframe: bool, now: float) -> ScreenUpdate:
        update = ScreenUpdate(
            seq=self._seq,
            width=frame.width,
            height=frame.height,
            rects=rects,
            keyframe=keyframe,
            monitor=frame.monitor_index,
        )
        self._seq = (self._seq + 1) % _U32
        self._last_sent = now
        return update

    def adapt(self, rtt: float, behind: bool) -> None:
        """Follow the viewer: ``behind`` (the broker's backpressure signal) halves the frame rate and
        drops quality by 10; a viewer that keeps up with ``rtt`` under ``slow_rtt`` gets 10 % more
        frame rate and 2 quality steps back per call, up to the configured maxima."""
        if behind:
            self._fps = max(self.min_fps, self._fps / 2)
            self._quality = max(self.min_quality, self._quality - 10)
        elif rtt < self.slow_rtt:
            self._fps = min(self.max_fps, self._fps * 1.1)
            self._quality = min(self.max_quality, self._quality + 2)
