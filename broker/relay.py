"""Per-connection send queues: bounded in bytes, control before screen, latest screen wins.

DESIGN §5 relay rules: input and control messages are reliable and ordered; screen updates are
"latest wins" for a slow viewer; nothing is buffered without bound; a slow viewer never slows
the agent or the other viewers. So the broker never awaits a peer's socket while handling
another peer's message: it pushes into that peer's :class:`OutboundQueue` (no await) and a
:class:`Sender` per connection writes it out as the transport takes it (no task per connection).

When a viewer falls behind, queued deltas are useless without what came before them: the queue
drops every queued update, refuses further deltas, and reports ``behind`` so the broker asks the
agent for a full frame (``screen_refresh`` with ``behind=true``). The next keyframe resumes the
stream. Control frames are never dropped; if even they exceed their bound the peer is not
reading at all and the connection is closed.
"""

from __future__ import annotations

import logging
from collections import deque
from enum import Enum
from typing import Protocol

from protocol.errors import ErrorCode

from .errors import BrokerError

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


class QueueOverflow(BrokerError):
    """Control frames exceed their bound: the peer is not reading (the sender closes it, 1008)."""

    code = ErrorCode.TOO_LARGE


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


class FrameSink(Protocol):
    """Where a :class:`Sender` writes: a :class:`wire.server.WireConnection`."""

    @property
    def writable(self) -> bool: ...

    def send_text(self, text: str) -> bool: ...

    def send_binary(self, data: bytes) -> bool: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class Sender:
    """One connection's way out, without a task: a frame is written at once while the transport
    takes data, and queued (bounded, control first, latest screen wins) while it pushes back; the
    owner calls :meth:`pump` when the transport resumes writing.

    The queue is made on first use: an idle agent never needs one (DESIGN §7, memory per agent).
    ``max_control_bytes`` and ``max_screen_bytes`` bound it (see :class:`OutboundQueue`).
    """

    __slots__ = (
        "_closed",
        "_closing",
        "bytes_sent",
        "max_control_bytes",
        "max_screen_bytes",
        "queue",
        "sink",
    )

    def __init__(
        self, sink: FrameSink, *, max_control_bytes: int = 1 << 20, max_screen_bytes: int = 4 << 20
    ) -> None:
        self.sink = sink
        self.max_control_bytes = max_control_bytes
        self.max_screen_bytes = max_screen_bytes
        self.queue: OutboundQueue | None = None
        self.bytes_sent = 0
        self._closing: tuple[int, str] | None = None
        self._closed = False

    def _queue(self) -> OutboundQueue:
        if self.queue is None:
            self.queue = OutboundQueue(
                max_control_bytes=self.max_control_bytes, max_screen_bytes=self.max_screen_bytes
            )
        return self.queue

    @property
    def queued_bytes(self) -> int:
        return 0 if self.queue is None else self.queue.queued_bytes

    def _idle(self) -> bool:
        return (self.queue is None or not len(self.queue)) and self.sink.writable

    def send_control(self, frame: Frame) -> None:
        """Send or queue a control frame; on overflow the connection is closed (the peer is not reading)."""
        if self._closed or self._closing is not None:
            return
        if self._idle():
            self._write(frame)
            return
        try:
            self._queue().push_control(frame)
        except QueueOverflow as exc:
            log.warning("closing a connection that does not read: %s", exc)
            self._closed = True
            self.queue = None
            self.sink.close(1008, "too_slow")

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        if self._closed or self._closing is not None:
            return ScreenPush.DROPPED
        queue = self.queue
        if self._idle() and (queue is None or not queue.needs_keyframe or keyframe):
            if queue is not None:
                queue.needs_keyframe = False
            self._write(frame)
            return ScreenPush.QUEUED
        return self._queue().push_screen(frame, keyframe=keyframe)

    def write(self, frame: str) -> None:
        """The LinkPump writer: send or queue, and return at once."""
        self.send_control(frame)

    def pump(self) -> None:
        """Write queued frames while the transport takes them; then a deferred close, if any."""
        queue = self.queue
        while queue is not None and self.sink.writable and not self._closed:
            frame = queue.pop()
            if frame is None:
                break
            self._write(frame)
        if self._closing is not None and (queue is None or not len(queue)):
            code, reason = self._closing
            self._closing = None
            self._closed = True
            self.sink.close(code, reason)

    def close_after(self, code: int, reason: str) -> None:
        """Close once what is queued has been written (a refusal, a revocation notice)."""
        if self._closed or self._closing is not None:
            return
        self._closing = (code, reason)
        self.pump()

    def close(self) -> None:
        """The connection is gone: drop what is queued."""
        self._closed = True
        self.queue = None

    def _write(self, frame: Frame) -> None:
        if isinstance(frame, str):
            self.sink.send_text(frame)
        else:
            self.sink.send_binary(frame)
        self.bytes_sent += len(frame)
