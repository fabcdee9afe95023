"""The cluster bus on NATS (nats-py, the ``cluster`` extra).

One connection per broker process; two subscriptions (every broadcast kind, and every kind addressed
to this node, :func:`~.signals.subscriptions_for`) dispatched by signal type to the handlers. NATS
core (not JetStream): signals are at-most-once, the database is the state of record (see
:mod:`.bus`).

Connection handling: :meth:`NatsBus.start` returns at once and connects in the background, retrying
every ``reconnect_wait`` seconds for as long as it takes (a broker started before NATS is up is
*not ready* until it is, and says so). Once connected, nats-py reconnects by itself after a loss
(``disconnected_cb`` → :attr:`BusState.LOST`, ``reconnected_cb`` → :attr:`BusState.RECOVERED`) and
restores the subscriptions; what is published while lost is buffered (up to ``pending_size``) and
sent on recovery. A server that stops answering without closing the socket is noticed by NATS
pings: after ``ping_interval × (max_outstanding_pings + 1)`` seconds at most (15 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg

from wire.tasks import stop_task

from .bus import BusState, BusUnavailable, HandlerBus
from .signals import DEFAULT_PREFIX, Signal, check_prefix, encode_signal, subject_for, subscriptions_for

__all__ = ["DEFAULT_NATS_URL", "NatsBus"]

log = logging.getLogger(__name__)

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


class NatsBus(HandlerBus):
    def __init__(
        self,
        node: str,
        *,
        url: str = DEFAULT_NATS_URL,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 2.0,
        reconnect_wait: float = 1.0,
        ping_interval: float = 5.0,
        max_outstanding_pings: int = 2,
        pending_size: int = 1024 * 1024,
    ) -> None:
        """
        :param node: this process's node id (:func:`~.signals.new_node_id`).
        :param url: the NATS server(s), comma-separated (``nats://host:4222``; ``tls://`` for TLS).
        :param prefix: subject prefix of this cluster (several clusters may share one NATS).
        :param connect_timeout: seconds one connection attempt may take.
        :param reconnect_wait: seconds between attempts, first connection and after a loss.
        :param ping_interval: seconds between NATS pings (how a silent server is noticed).
        :param max_outstanding_pings: unanswered pings after which the connection counts as lost.
        :param pending_size: bytes of signals buffered while lost (NATS drops beyond it).
        """
        super().__init__(node)
        self.url = url
        self.prefix = check_prefix(prefix)
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.pending_size = pending_size
        self._nc: Client | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name=f"nats-connect-{self.node}")

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the bus to be ready; whether it is."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.state.ready and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self.state.ready

    async def _connect(self) -> None:
        servers = [u.strip() for u in self.url.split(",") if u.strip()]
        while not self._closing:
            nc = Client()
            try:
                await nc.connect(
                    servers=servers,
                    name=f"broker {self.node}",
                    connect_timeout=self.connect_timeout,  # type: ignore[arg-type]  # nats-py takes floats
                    reconnect_time_wait=self.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,  # after the first connection: forever
                    ping_interval=self.ping_interval,  # type: ignore[arg-type]
                    max_outstanding_pings=self.max_outstanding_pings,
                    pending_size=self.pending_size,
                    allow_reconnect=False,  # the first connection: this loop retries, not nats-py
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except Exception as exc:
                self._handlers.set_state(BusState.CONNECTING)
                log.warning("cluster bus %s: NATS at %s does not answer (%s)", self.node, self.url, exc)
                await asyncio.sleep(self.reconnect_wait)
                continue
            broadcast, mine = subscriptions_for(self.prefix, self.node)
            try:
                await nc.subscribe(broadcast, cb=self._on_message)
                await nc.subscribe(mine, cb=self._on_message)
                await nc.flush(timeout=max(1, int(self.connect_timeout)))
            except Exception as exc:  # the server went away between CONNECT and SUB: start over
                log.warning("cluster bus %s: subscribing failed (%s)", self.node, exc)
                with contextlib.suppress(Exception):
                    await nc.close()
                await asyncio.sleep(self.reconnect_wait)
                continue
            # From now on nats-py reconnects by itself after a loss (and restores the subscriptions).
            nc.options["allow_reconnect"] = True
            self._nc = nc
            self._handlers.set_state(BusState.CONNECTED)
            return

    async def _on_message(self, msg: Msg) -> None:
        self._handlers.deliver_bytes(msg.data)

    async def _on_error(self, exc: Exception) -> None:
        log.info("cluster bus %s: %s", self.node, exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._handlers.set_state(BusState.LOST)

    async def _on_reconnected(self) -> None:
        if not self._closing:
            self._handlers.set_state(BusState.RECOVERED)

    async def _on_closed(self) -> None:
        if self._nc is not None:
            self._handlers.set_state(BusState.CLOSED)

    async def publish(self, signal: Signal) -> None:
        nc = self._nc
        if nc is None or self._closing:
            raise BusUnavailable(f"the bus of {self.node} is {self.state.value}")
        data = encode_signal(signal)
        await nc.publish(subject_for(self.prefix, signal), data)
        self._handlers.stats.count(self._handlers.stats.published, type(signal).__name__)

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the server has everything published so far (tests, orderly shutdown)."""
        if self._nc is not None and self.state.ready:
            await self._nc.flush(timeout=max(1, int(timeout)))

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            await stop_task(self._connecting, what="cluster bus connect")
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                async with asyncio.timeout(2.0):
                    await nc.close()
            except (TimeoutError, Exception) as exc:  # closing is best effort
                log.info("cluster bus %s: close: %s", self.node, exc)
        self._handlers.set_state(BusState.CLOSED)
        await self._handlers.drain()
