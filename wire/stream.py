"""An awaitable face on a lean connection, for exchanges written as coroutines.

Enrollment links are few, short and do slow things in between messages (certificate signing), so
they are easiest to read as ``await ws.recv()`` loops driven by
:class:`wire.LinkRunner`. :class:`AsyncConnection` gives a :class:`wire.server.WireConnection` the
three methods that runner needs (``recv``, ``send``, ``close``), with websockets' own
``ConnectionClosed`` when the connection is gone, so the same runner drives the agent's and the
operator client's stock websockets connections and these.
"""

from __future__ import annotations

import asyncio
from collections import deque

from websockets.exceptions import ConnectionClosed

from .server import WireConnection


class AsyncConnection:
    """A :class:`wire.server.Handler` that queues incoming messages for :meth:`recv`.

    max_queue:
        Messages received but not yet taken by :meth:`recv` before the transport stops reading
        (TCP back-pressure on a peer that sends faster than the application handles), 16 as
        websockets' default; reading resumes when a quarter remains.
    """

    def __init__(self, conn: WireConnection, *, max_queue: int = 16) -> None:
        self.conn = conn
        self.max_queue = max_queue
        loop = asyncio.get_running_loop()
        self._messages: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        self._reading_paused = False

    @property
    def peer(self) -> str:
        return self.conn.peer

    # -- Handler ----------------------------------------------------------------------------------

    def text_received(self, text: str) -> None:
        self._push(text)

    def binary_received(self, data: bytes) -> None:
        self._push(data)

    def ping_received(self) -> None:
        """Ping frames are answered by the WebSocket layer; enrollment links need nothing more."""

    def resume_writing(self) -> None:
        _wake(self._drain)

    def connection_lost(self) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        _wake(self._waiter)
        _wake(self._drain)

    # -- awaitable API ----------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the connection is gone and nothing is left.
        Safe to cancel (``wait_for``): a message is only taken once this call returns it."""
        while not self._messages:
            if self._lost.done():
                raise self._closed()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        if self._reading_paused and len(self._messages) <= self.max_queue // 4:
            self._reading_paused = False
            self.conn.resume_reading()
        return message

    async def send(self, message: str | bytes) -> None:
        sent = self.conn.send_text(message) if isinstance(message, str) else self.conn.send_binary(message)
        if not sent:
            raise self._closed()
        while not self.conn.writable and not self._lost.done():
            self._drain = asyncio.get_running_loop().create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close and wait until the connection is gone (the server cuts it after its close timeout)."""
        self.conn.close(code, reason)
        await asyncio.shield(self._lost)

    # -- internals --------------------------------------------------------------------------------

    def _push(self, message: str | bytes) -> None:
        self._messages.append(message)
        _wake(self._waiter)
        if not self._reading_paused and len(self._messages) >= self.max_queue:
            self._reading_paused = True
            self.conn.pause_reading()

    def _closed(self) -> ConnectionClosed:
        ws = self.conn.ws
        return ConnectionClosed(ws.close_rcvd, ws.close_sent, ws.close_rcvd_then_sent)


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
