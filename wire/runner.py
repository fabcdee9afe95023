"""Drive one :class:`protocol.Link` over one websockets connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from websockets.exceptions import ConnectionClosed

from protocol import Closing, Event, Link, LinkState, SendPing
from protocol.errors import UnexpectedMessage
from protocol.messages import Message

Clock = Callable[[], float]
EventHandler = Callable[[Event], Awaitable[None]]
Pinger = Callable[[], Awaitable[Awaitable[object]]]
"""Sends one WebSocket Ping frame; the awaitable it returns completes when the Pong arrives
(websockets' ``ClientConnection.ping``)."""


class MessageStream(Protocol):
    """What the runner needs of a connection: websockets' own, or :class:`wire.AsyncConnection`.
    ``recv`` and ``send`` raise websockets' ``ConnectionClosed`` once it is gone."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class LinkRunner:
    """Pumps frames in and out; the application reacts to events and calls :meth:`send`.

    ``closed_by`` tells after :meth:`run` returns who ended the connection: the ``Closing`` the
    core asked for, or None when the peer or the network did. ``binary``: whether binary frames
    belong to this path; when not (enrollment), each is answered and counted as a bad message.
    ``ping``: how to send a WebSocket Ping frame when the link asks for one (:class:`SendPing`,
    a client link with ``ping_frames``); its Pong is reported to the link.
    """

    def __init__(
        self,
        ws: MessageStream,
        link: Link,
        *,
        clock: Clock = time.time,
        binary: bool = True,
        ping: Pinger | None = None,
    ) -> None:
        self.ws = ws
        self.link = link
        self.clock = clock
        self.binary = binary
        self.ping = ping
        self.closed_by: Closing | None = None

    async def send(self, message: Message) -> None:
        self.link.send(message)
        await self.flush()

    async def send_binary(self, data: bytes) -> None:
        if self.link.state is LinkState.OPEN:
            await self.ws.send(data)

    async def flush(self) -> None:
        for frame in self.link.data_to_send():
            await self.ws.send(frame.decode("utf-8"))

    async def close(self, code: int, reason: str) -> None:
        await self.flush()
        self.closed_by = self.link.close(code, reason)
        await self.ws.close(code, reason)

    async def run(self, on_event: EventHandler) -> None:
        """Until the connection ends; never raises for the peer's faults."""
        try:
            await self._run(on_event)
        except ConnectionClosed:
            pass
        finally:
            if self.link.state is not LinkState.CLOSED:
                self.link.close()

    async def _send_ping(self) -> None:
        if self.ping is None:
            return
        waiter = asyncio.ensure_future(await self.ping())
        waiter.add_done_callback(self._pong)

    def _pong(self, waiter: asyncio.Future[object]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            return  # the connection closed before the Pong came
        self.link.pong_received(self.clock())

    async def _run(self, on_event: EventHandler) -> None:
        # One ``recv()`` at a time, kept across timer wake-ups rather than cancelled by them, so a
        # receive is never cut. Not ``asyncio.wait_for`` around ``recv()`` (it can drop this loop's
        # own cancellation on Python 3.11: wire/tasks.py), nor ``asyncio.timeout`` (with it the
        # agent stopped receiving in one run in three of tests/e2e/test_helpdesk_cli.py, Python 3.11
        # and websockets 17.4).
        receiving: asyncio.Task[str | bytes] | None = None
        try:
            while self.link.state is not LinkState.CLOSED:
                await self.flush()
                deadline = self.link.next_timer()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                if receiving is None:
                    receiving = asyncio.ensure_future(self.ws.recv())
                    receiving.add_done_callback(_retrieved)
                done, _ = await asyncio.wait({receiving}, timeout=timeout)
                if not done:
                    events = self.link.handle_timer(self.clock())
                else:
                    frame, receiving = receiving.result(), None  # ConnectionClosed ends the run
                    events = self._received(frame)
                for event in events:
                    if isinstance(event, Closing):
                        self.closed_by = event
                        await self.flush()
                        await self.ws.close(event.code, event.reason)
                        return
                    if isinstance(event, SendPing):
                        await self._send_ping()
                        continue
                    await on_event(event)
                await self.flush()
        finally:
            if receiving is not None:
                receiving.cancel()  # e.g. after our close frame: the connection is done with

    def _received(self, frame: str | bytes) -> list[Event]:
        if isinstance(frame, bytes) and not self.binary:
            return self.link.reject(
                UnexpectedMessage("binary frames are not accepted on this path"), self.clock()
            )
        if isinstance(frame, bytes):
            return self.link.receive_binary(frame, self.clock())
        return self.link.receive(frame, self.clock())


def _retrieved(task: asyncio.Task[str | bytes]) -> None:
    """A receive left behind at the end ends cancelled or closed: nothing to report."""
    if not task.cancelled():
        task.exception()
