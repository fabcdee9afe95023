"""Drive one :class:`protocol.Link` from a lean connection's callbacks: no task per connection.

The broker holds thousands of idle agent links. :class:`wire.LinkRunner` needs a task parked in
``recv()`` for each (plus ``wait_for``'s own task); :class:`LinkPump` instead feeds each frame to
the Link as it arrives and keeps one timer handle for the Link's deadline (heartbeat timeout). The
timer is not moved on every message: when it fires early because the deadline moved, it re-arms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from protocol import Closing, Event, Link, LinkState
from protocol.errors import ErrorCode, UnexpectedMessage
from protocol.messages import Message

from .server import WireConnection

log = logging.getLogger("wire.pump")

Clock = Callable[[], float]
IDLE_TIMEOUT = ErrorCode.IDLE_TIMEOUT.value
BINARY_REFUSED = UnexpectedMessage("binary frames are not accepted on this path")
SyncEventHandler = Callable[[Event], None]


class LinkPump:
    """A :class:`wire.server.Handler`; the application reacts in ``on_event`` and calls :meth:`send`.

    ``write`` puts one encoded frame on the way (default: straight to the connection; the broker
    passes its per-connection :class:`broker.relay.Sender`); ``close`` closes after what is queued
    (default: the connection's close). ``on_lost`` runs once when the connection is gone.
    ``closed_by`` is the ``Closing`` the core asked for, or None when the peer or network ended it.
    ``binary``: whether binary frames are part of this path's protocol; when not (operators), each
    one is answered with ``unexpected_message`` and counted as a bad message.
    """

    __slots__ = (
        "_close",
        "_timer",
        "binary",
        "clock",
        "closed_by",
        "conn",
        "link",
        "on_event",
        "on_lost",
        "on_resume",
        "write",
    )

    def __init__(
        self,
        conn: WireConnection,
        link: Link,
        on_event: SyncEventHandler,
        *,
        clock: Clock = time.time,
        write: Callable[[str], object] | None = None,
        close: Callable[[int, str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        binary: bool = True,
    ) -> None:
        self.conn = conn
        self.binary = binary
        self.link = link
        self.clock = clock
        self.on_event: SyncEventHandler | None = on_event
        self.on_lost = on_lost
        self.on_resume: Callable[[], None] | None = None
        self.write: Callable[[str], object] = write or conn.send_text
        self._close: Callable[[int, str], None] = close or conn.close
        self._timer: asyncio.TimerHandle | None = None
        self.closed_by: Closing | None = None
        self._arm()

    # -- application API --------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        self.link.send(message)
        self.flush()

    def flush(self) -> None:
        for frame in self.link.data_to_send():
            self.write(frame.decode("utf-8"))

    def close(self, code: int, reason: str) -> None:
        self.flush()
        self.closed_by = self.link.close(code, reason)
        self._close(code, reason)

    # -- Handler ----------------------------------------------------------------------------------

    def text_received(self, text: str) -> None:
        self._handle(self.link.receive(text, self.clock()))

    def binary_received(self, data: bytes) -> None:
        if not self.binary:
            self._handle(self.link.reject(BINARY_REFUSED, self.clock()))
            return
        self._handle(self.link.receive_binary(data, self.clock()))

    def ping_received(self) -> None:
        # The agent's heartbeat: the deadline moves, nothing else (no event, no JSON, no store write).
        self.link.frame_received(self.clock())

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    def connection_lost(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.link.state is not LinkState.CLOSED:
            self.link.close()
        on_lost = self.on_lost
        # Let go of the application's callbacks: they are closures that refer back to this pump, and
        # the cycle would keep the connection (TLS state included) until the garbage collector runs.
        self.on_event = self.on_lost = self.on_resume = None
        self.write = self._close = _discard
        if on_lost is not None:
            on_lost()

    # -- internals --------------------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Closing):
                self.closed_by = event
                self.flush()
                self._close(event.code, event.reason)
                if event.reason == IDLE_TIMEOUT:  # silent past its timeout: it won't answer our close
                    self.conn.cut_after(self.conn.server.fail_linger)
                return
            if self.on_event is None:
                return
            try:
                self.on_event(event)
            except Exception:  # one connection's bug never takes the others down
                log.exception("link event handler failed")
                self.close(1011, ErrorCode.INTERNAL.value)
                return
            if self.closed_by is not None:  # the application closed it
                return
        self.flush()

    def _arm(self) -> None:
        deadline = self.link.next_timer()
        if deadline is None:
            return
        loop = self.conn.server.loop
        self._timer = loop.call_later(max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.link.state is LinkState.CLOSED:
            return
        self._handle(self.link.handle_timer(self.clock()))
        self._arm()  # no-op once the link is closed


def _discard(*args: object) -> None:
    """Writes and closes after the connection is gone go nowhere."""
