"""The agent's outbound connection to ``/agent``: mutual TLS, hello, heartbeats, reconnect.

Heartbeats (docs/heartbeat.md): TCP keepalive in the kernel every 60 s keeps the home router's NAT
state alive for free; every ``Limits.heartbeat_interval`` (300 s) the agent sends a WebSocket Ping
frame, answered by the broker's WebSocket layer without any JSON, and a broker silent for
``idle_timeout`` (660 s) is given up and dialled again. A broker of an earlier version does not
count Ping frames and closes the link with ``idle_timeout``: the agent then falls back to a JSON
``ping`` every 20 s (:data:`LEGACY_LIMITS`) for as long as it runs.

Only ever outbound over WSS on one port (別記2: no inbound port, no UDP). A drop or a broker
restart is followed by a reconnect after a jittered exponential delay; a refusal that retrying
cannot fix (revoked or unknown certificate, terminated contract) ends the loop with a clear
error instead of hammering the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from protocol import Event, Limits, Link, Opened, Received
from protocol.errors import ErrorCode
from protocol.link import CLOSE_GOING_AWAY
from protocol.messages import AgentStatus, Error, Message
from wire import LinkRunner
from wire.keepalive import set_tcp_keepalive

from .backoff import Backoff
from .enroll import SOFTWARE, client_ssl_context, ws_url
from .errors import ConnectionRefusedByBroker
from .identity import Identity
from .tls_session import SessionCache, enable_resumption

log = logging.getLogger("agent")

PERMANENT = {
    ErrorCode.CERT_REVOKED.value,
    ErrorCode.CERT_UNKNOWN.value,
    ErrorCode.CERT_EXPIRED.value,
    ErrorCode.SUBSCRIBER_TERMINATED.value,
    ErrorCode.CERT_REQUIRED.value,
}
STABLE_AFTER = 30.0
"""A connection that lasted this long resets the backoff."""

LEGACY_LIMITS = Limits(heartbeat_interval=20.0, idle_timeout=65.0)
"""Heartbeats for a broker that closed us for idleness despite our Ping frames: JSON ``ping`` every
20 s, as agents did before issue 15."""

MessageHandler = Callable[["AgentClient", Message], Awaitable[None]]


class AgentClient:
    """Keeps one connection to the broker up until ``stop`` is set or a permanent refusal."""

    def __init__(
        self,
        identity: Identity,
        *,
        display: bool = False,
        limits: Limits | None = None,
        legacy_limits: Limits = LEGACY_LIMITS,
        backoff: Backoff | None = None,
        on_message: MessageHandler | None = None,
        on_state: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.time,
        resume_tls: bool = True,
    ) -> None:
        self.identity = identity
        self.display = display
        self.limits = limits or Limits()
        self.legacy_limits = legacy_limits
        self.backoff = backoff or Backoff()
        self.on_message = on_message
        self.on_state = on_state or (lambda state, delay: None)
        self.clock = clock
        self.runner: LinkRunner | None = None
        self.connected = asyncio.Event()
        self.ping_frames = True
        """Heartbeat with WebSocket Ping frames; False after a broker that ignores them closed us."""
        self._ssl = client_ssl_context(
            identity.ca_path.read_bytes(), cert_path=identity.cert_path, key_path=identity.key_path
        )
        self.tls_sessions = SessionCache()
        """The last TLS session: a reconnect offers it and the broker skips the certificate work."""
        if resume_tls:
            enable_resumption(self._ssl, self.tls_sessions)

    async def send(self, message: Message) -> None:
        if self.runner is None:
            raise ConnectionError("not connected")
        await self.runner.send(message)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect; returns when ``stop`` is set, raises on a permanent refusal."""
        while not stop.is_set():
            started = self.clock()
            refusal = await self._connect_once(stop)
            if refusal is not None and refusal.code in PERMANENT:
                raise ConnectionRefusedByBroker(refusal.code, refusal.message)
            if stop.is_set():
                return
            if self.clock() - started >= STABLE_AFTER:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            self.on_state("disconnected", delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()

    async def _connect_once(self, stop: asyncio.Event) -> Error | None:
        refusal: list[Error] = []
        try:
            async with connect(
                ws_url(self.identity.broker_url, "/agent"),
                ssl=self._ssl,
                ping_interval=None,
                compression=None,
                open_timeout=15,
                max_size=self.limits.max_binary_bytes,
            ) as ws:
                set_tcp_keepalive(ws.transport.get_extra_info("socket"))
                link = Link(
                    is_client=True,
                    role="agent",
                    now=self.clock(),
                    software=SOFTWARE,
                    limits=self.limits if self.ping_frames else self.legacy_limits,
                    ping_frames=self.ping_frames,
                )
                runner = LinkRunner(ws, link, clock=self.clock, ping=ws.ping)
                self.runner = runner

                async def on_event(event: Event) -> None:
                    if isinstance(event, Opened):
                        # The broker has answered, so TLS 1.3's ticket has arrived: keep it.
                        self.tls_sessions.remember(ws.transport.get_extra_info("ssl_object"))
                        await runner.send(
                            AgentStatus(
                                machine_name=self.identity.machine_name or "unknown",
                                agent_version=SOFTWARE,
                                display=self.display,
                            )
                        )
                        self.connected.set()
                        self.on_state("connected", 0.0)
                    elif isinstance(event, Received):
                        if isinstance(event.message, Error):
                            refusal.append(event.message)
                        if self.on_message is not None:
                            await self.on_message(self, event.message)

                run_task = asyncio.create_task(runner.run(on_event))
                stop_task = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                stop_task.cancel()
                if run_task not in done:
                    await runner.close(1000, "agent stopping")
                    await run_task
                closed = ws.close_reason
                if closed in PERMANENT and not refusal:
                    refusal.append(Error(code=closed, message=closed))
                if (
                    self.ping_frames
                    and runner.closed_by is None
                    and ws.close_code == CLOSE_GOING_AWAY
                    and closed == ErrorCode.IDLE_TIMEOUT.value
                ):
                    log.info("the broker does not count Ping frames: JSON heartbeats from now on")
                    self.ping_frames = False
        except (OSError, WebSocketException, TimeoutError) as exc:
            log.info("connection failed: %s", exc or type(exc).__name__)
        finally:
            self.runner = None
            self.connected.clear()
        return refusal[-1] if refusal else None
