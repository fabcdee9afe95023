"""Screen sharing and input in a session: where frames come from, where input goes.

Frames come from a :class:`FrameSource`: the real screen (``mss``, see :mod:`agent.screen`), or
a deterministic test pattern for machines without a display and for tests of the relay (the
issue allows a test source until real capture is wired). :class:`ScreenSharer` runs capture,
diff and encoding in a worker thread so the connection stays responsive, and only while
``screen:view`` is granted. Input goes to an :class:`InputSink` only while ``input:control``
is granted; the sink never logs keys or typed text (第33条 secrecy of communications).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.screen.capture import Frame, Monitor, MonitorNotFound
from agent.screen.pipeline import FramePipeline
from protocol.messages import InputEvent
from protocol.screen import ScreenUpdate, encode_update
from wire.tasks import stop_task

log = logging.getLogger("agent.sharing")


class FrameSource(Protocol):
    def monitors(self) -> list[Monitor]: ...
    def select(self, index: int) -> None: ...
    def grab(self) -> Frame: ...


def pattern_pixels(width: int, height: int, tick: int = 0) -> npt.NDArray[np.uint8]:
    """A known BGRA picture: four coloured quadrants, a 16-px grey grid, and a white block whose
    position follows ``tick`` (so consecutive frames differ in one small place)."""
    img = np.zeros((height, width, 4), dtype=np.uint8)
    img[..., 3] = 255
    h2, w2 = height // 2, width // 2
    img[:h2, :w2, :3] = (0, 0, 200)  # red (BGR order)
    img[:h2, w2:, :3] = (0, 200, 0)  # green
    img[h2:, :w2, :3] = (200, 0, 0)  # blue
    img[h2:, w2:, :3] = (0, 200, 200)  # yellow
    img[::16, :, :3] = 128
    img[:, ::16, :3] = 128
    if tick:
        x = (tick * 8) % max(1, width - 16)
        img[4:20, x : x + 16, :3] = 255
    return img


_QUADRANT_BGR = ((0, 0, 200), (0, 200, 0), (200, 0, 0), (0, 200, 200))
"""pattern_pixels' quadrant colours: top left, top right, bottom left, bottom right."""


@dataclass(slots=True, init=False)
class TestPatternSource:
    """Synthetic monitors side by side, each ``width``×``height``; ``animate`` moves the white
    block each grab.

    One monitor (the default) is exactly :func:`pattern_pixels`. With ``monitors=N`` the layout
    follows mss (0 = all of them combined, 1..N one each, left to right) and monitor ``n`` shows
    the pattern with its quadrant colours rotated by ``n - 1`` places (and dimmed every fourth
    monitor), so a viewer can tell from the pixels which monitor it is shown.
    """

    __test__ = False  # not a pytest class
    width: int
    height: int
    animate: bool
    count: int
    selected: int
    _tick: int

    def __init__(
        self, width: int = 640, height: int = 400, animate: bool = False, monitors: int = 1, _tick: int = 0
    ) -> None:
        if not 1 <= monitors <= 16:
            raise ValueError(f"monitors must be 1..16, not {monitors}")
        self.width = width
        self.height = height
        self.animate = animate
        self.count = monitors
        self.selected = 1
        self._tick = _tick

    def monitors(self) -> list[Monitor]:
        one = [
            Monitor(index=n, left=(n - 1) * self.width, top=0, width=self.width, height=self.height)
            for n in range(1, self.count + 1)
        ]
        if self.count == 1:
            return one
        return [Monitor(index=0, left=0, top=0, width=self.count * self.width, height=self.height), *one]

    def select(self, index: int) -> None:
        if not 0 <= index <= self.count:
            raise ValueError(f"no monitor {index}")
        if self.count > 1:  # one monitor: "all" is the same picture, still monitor 1
            self.selected = index

    def grab(self) -> Frame:
        if self.animate:
            self._tick += 1
        if self.count == 1:
            return Frame(
                width=self.width,
                height=self.height,
                pixels=pattern_pixels(self.width, self.height, self._tick),
            )
        if self.selected == 0:
            pixels = np.concatenate([self.monitor_pixels(n) for n in range(1, self.count + 1)], axis=1)
        else:
            pixels = self.monitor_pixels(self.selected)
        height, width = pixels.shape[:2]
        return Frame(width=width, height=height, pixels=pixels, monitor_index=self.selected)

    def monitor_pixels(self, n: int) -> npt.NDArray[np.uint8]:
        """Monitor ``n``'s picture (BGRA): :func:`pattern_pixels` with the quadrant colours rotated
        by ``n - 1`` places and, from monitor 5 on, dimmed by 60 every four monitors."""
        img = pattern_pixels(self.width, self.height, self._tick)
        if n == 1:
            return img
        h2, w2 = self.height // 2, self.width // 2
        quadrants = (np.s_[:h2, :w2], np.s_[:h2, w2:], np.s_[h2:, :w2], np.s_[h2:, w2:])
        level = 200 - 60 * (((n - 1) // 4) % 3)
        for i, where in enumerate(quadrants):
            region = img[where][..., :3]  # a view: writing it writes img
            mask = (region == _QUADRANT_BGR[i]).all(axis=-1)  # not the grid, not the white block
            region[mask] = tuple(c * level // 200 for c in _QUADRANT_BGR[(i + n - 1) % 4])
        return img


def wants_lossless(source: FrameSource) -> bool:
    """The test pattern, and a source built with ``lossless=True``, go without JPEG so a viewer
    can check them pixel for pixel."""
    return isinstance(source, TestPatternSource) or bool(getattr(source, "lossless", False))


class InputSink(Protocol):
    def apply(self, event: InputEvent) -> None: ...


class CountingInputSink:
    """For a PC without a display (and tests): counts what would be applied, prints the kind and
    pointer position only — never a key or typed text."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.applied = 0
        self.report = report or (lambda line: None)

    def apply(self, event: InputEvent) -> None:
        self.applied += 1
        where = f" {event.x},{event.y}" if event.x is not None and event.y is not None else ""
        self.report(f"input applied: {event.kind}{where}")


class ScreenSharer:
    """Sends screen updates while running; the session starts and stops it with the consent."""

    def __init__(
        self,
        source: FrameSource,
        send: Callable[[bytes], Awaitable[None]],
        *,
        pipeline: FramePipeline | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_monitor: Callable[[int], Coroutine[Any, Any, None]] | None = None,
        retry_delay: float = 1.0,
        rtt: Callable[[], float | None] = lambda: None,
        adapt_interval: float = 1.0,
    ) -> None:
        self.source = source
        self.send = send
        self.pipeline = pipeline or FramePipeline(lossless=wants_lossless(source))
        self.clock = clock
        self.on_monitor = on_monitor
        self.retry_delay = retry_delay
        self.rtt = rtt
        """The connection's measured round trip (from the protocol's ping/pong), for :meth:`_adapt`."""
        self.adapt_interval = adapt_interval
        self._last_adapt = float("-inf")
        self.capture_errors = 0
        self._monitor_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._wake = asyncio.Event()
        """Set with ``_full`` and by :meth:`boost`: the wait between captures is looked at again."""
        # One thread for capture and encoding: an X connection belongs to the thread that opened it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="screen")
        self.updates_sent = 0
        self.bytes_sent = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self.pipeline.reset()
            self._full.set()
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sharing at once (withdrawn consent, session end)."""
        if self._task is not None:
            await stop_task(self._task, what="screen sharing")  # logs e.g. a connection closed under a send
            self._task = None

    def refresh(self, *, behind: bool = False, monitor: int | None = None) -> None:
        """A viewer joined, asked, or fell behind: send a keyframe next, slow down if behind."""
        if monitor is not None:
            try:
                self.source.select(monitor)
            except ValueError:
                log.info("operator picked a monitor that does not exist: %s", monitor)
            else:
                self._announce(monitor)
        if behind:
            self.pipeline.adapt(rtt=0.0, behind=True)
        self._full.set()
        self._wake.set()

    def boost(self) -> None:
        """An operator's input was applied: its effect shows soon, so capture at the fast rate for
        a while (:meth:`FramePipeline.note_activity`) starting with the capture already waiting."""
        self.pipeline.note_activity(self.clock())
        self._wake.set()

    def _capture(self, now: float, full: bool) -> ScreenUpdate | None:
        frame = self.source.grab()
        return self.pipeline.next_update(frame, now=now, full=full)

    def _announce(self, monitor: int) -> None:
        """Tell the viewers which monitor is shared now (a new ``monitor_layout``)."""
        if self.on_monitor is None:
            return
        task = asyncio.get_running_loop().create_task(self.on_monitor(monitor))
        self._monitor_tasks.add(task)
        task.add_done_callback(self._monitor_tasks.discard)

    def _adapt(self, now: float) -> None:
        """Once a second, let a viewer that keeps up (round trip under the pipeline's ``slow_rtt``)
        win back frame rate and quality; the broker's "behind" signal lowers them (:meth:`refresh`)."""
        if now - self._last_adapt < self.adapt_interval:
            return
        self._last_adapt = now
        rtt = self.rtt()
        if rtt is not None:
            self.pipeline.adapt(rtt=rtt, behind=False)

    async def _run(self) -> None:
        while True:
            started = self.clock()
            full = self._full.is_set()
            self._full.clear()
            loop = asyncio.get_running_loop()
            try:
                update = await loop.run_in_executor(self._executor, self._capture, started, full)
            except Exception as exc:  # a failed grab must not end sharing for good
                # A monitor unplugged, a resolution change mid-grab, the X server restarting: say
                # so (never the pixels), wait a little and try again with a keyframe.
                self.capture_errors += 1
                log.warning("screen capture failed: %s: %s", type(exc).__name__, exc)
                if isinstance(exc, MonitorNotFound):
                    with contextlib.suppress(ValueError):
                        self.source.select(1)
                        self._announce(1)
                self._full.set()
                await asyncio.sleep(self.retry_delay)
                continue
            if update is not None:
                data = encode_update(update)
                await self.send(data)
                self.updates_sent += 1
                self.bytes_sent += len(data)
            self._adapt(started)
            await self._pause(started)

    async def _pause(self, started: float) -> None:
        """Wait until the next capture is due (the pipeline's adaptive interval from ``started``), or
        a keyframe is asked for; a :meth:`boost` meanwhile shortens the wait to the fast rate."""
        for _ in range(16):  # bounded: each round is a boost or a keyframe request
            delay = self.pipeline.capture_interval(started) - (self.clock() - started)
            if delay <= 0 or self._full.is_set():
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                return
