"""Per-connection send queues: bounded in bytes, control before screen, latest screen wins.

DESIGN §5 relay rules: input and control messages are reliable and ordered; screen updates are
"latest wins" for a slow viewer; nothing is buffered without bound; a slow viewer never slows
the agent or the other viewers. So the broker never awaits a peer's socket while handling
another peer's message: it pushes into that peer's :class:`OutboundQueue` (no await) and a
:class:`Sender` task per connection drains it.

When a viewer falls behind, queued deltas are useless without what came before them: the queue
drops every queued update, refuses further deltas, and reports ``behind`` so the broker asks the
agent for a full frame (``screen_refresh`` with ``behind=true``). The next keyframe resumes the
stream. Control frames are never dropped; if even they exceed their bound the peer is not
reading at all and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from enum import Enum

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("broker.relay")

Frame = str | bytes


class ScreenPush(Enum):
    QUEUED = "queued"
    REPLACED = "replaced"
    """A keyframe replaced queued (stale) updates."""
    BEHIND = "behind"
    """The viewer fell behind: queued updates were dropped; ask the agent for a keyframe."""
    DROPPED = "dropped"
    """Waiting for a keyframe: this delta was dropped."""


class QueueOverflow(Exception):
    """Control frames exceed their bound: the peer is not reading."""


class OutboundQueue:
    """Pure data structure: no I/O, no clock.

    max_control_bytes:
        Bound on queued control frames (JSON: session state, chat, input for an agent). 1 MiB
        is thousands of messages; beyond it the peer is considered dead.
    max_screen_bytes:
        Bound on queued screen updates for this viewer: 4 MiB, a few full frames.
    """

    def __init__(self, *, max_control_bytes: int = 1 << 20, max_screen_bytes: int = 4 << 20) -> None:
        self.max_control_bytes = max_control_bytes
        self.max_screen_bytes = max_screen_bytes
        self._control: deque[Frame] = deque()
        self._screen: deque[bytes] = deque()
        self.control_bytes = 0
        self.screen_bytes = 0
        self.needs_keyframe = False
        self.dropped_updates = 0

    def __len__(self) -> int:
        return len(self._control) + len(self._screen)

    @property
    def queued_bytes(self) -> int:
        return self.control_bytes + self.screen_bytes

    def push_control(self, frame: Frame) -> None:
        size = len(frame)
        if self.control_bytes + size > self.max_control_bytes:
            raise QueueOverflow(f"{self.control_bytes + size} bytes of control frames queued")
        self._control.append(frame)
        self.control_bytes += size

    def push_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        if keyframe:
            replaced = bool(self._screen)
            self._clear_screen()
            self.needs_keyframe = False
            if len(frame) > self.max_screen_bytes:
                self.needs_keyframe = True
                self.dropped_updates += 1
                return ScreenPush.BEHIND
            self._screen.append(frame)
            self.screen_bytes += len(frame)
            return ScreenPush.REPLACED if replaced else ScreenPush.QUEUED
        if self.needs_keyframe:
            self.dropped_updates += 1
            return ScreenPush.DROPPED
        if self.screen_bytes + len(frame) > self.max_screen_bytes:
            self._clear_screen()
            self.dropped_updates += 1
            self.needs_keyframe = True
            return ScreenPush.BEHIND
        self._screen.append(frame)
        self.screen_bytes += len(frame)
        return ScreenPush.QUEUED

    def _clear_screen(self) -> None:
        self.dropped_updates += len(self._screen)
        self._screen.clear()
        self.screen_bytes = 0

    def pop(self) -> Frame | None:
        """Next frame to write: control first (reliable, ordered), then screen updates."""
        if self._control:
            frame = self._control.popleft()
            self.control_bytes -= len(frame)
            return frame
        if self._screen:
            screen = self._screen.popleft()
            self.screen_bytes -= len(screen)
            return screen
        return None


class Sender:
    """Drains one connection's :class:`OutboundQueue` in its own task."""

    def __init__(self, ws: Connection, queue: OutboundQueue | None = None) -> None:
        self.ws = ws
        self.queue = queue or OutboundQueue()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        self._closer: asyncio.Task[None] | None = None
        self.bytes_sent = 0

    def send_control(self, frame: Frame) -> None:
        """Queue a control frame; on overflow the connection is closed (the peer is not reading)."""
        try:
            self.queue.push_control(frame)
        except QueueOverflow as exc:
            log.warning("closing a connection that does not read: %s", exc)
            self._task.cancel()
            self._closer = asyncio.create_task(self.ws.close(1008, "too_slow"))
            return
        self._wake.set()

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        result = self.queue.push_screen(frame, keyframe=keyframe)
        self._wake.set()
        return result

    async def write(self, frame: Frame) -> None:
        """The LinkRunner writer: queue and return at once."""
        self.send_control(frame)

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while True:
                frame = self.queue.pop()
                if frame is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.ws.send(frame)
                self.bytes_sent += len(frame)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until the queue is empty (before a deliberate close)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.queue) and not self._task.done():
                    await asyncio.sleep(0.01)

    def close(self) -> None:
        self._task.cancel()
