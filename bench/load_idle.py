"""``python -m bench.loadgen idle``: simulated agents with real client certificates speaking the real
protocol, reconnecting with the agent's own backoff, and one heartbeat scheduler per process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from agent.backoff import Backoff
from bench.common import emit
from bench.load_io import MAX_SIZE, client_context, commands, recv_json, until_quit

HEARTBEAT = 20.0


STABLE_AFTER = 30.0  # as agent.connection: a connection that lasted this long resets the backoff


PERMANENT = {"cert_revoked", "cert_expired", "cert_unknown", "subscriber_terminated", "cert_required"}


def agent_address(index: int) -> str:
    """A loopback address of agent ``index``'s own, as real agents each come from their own home
    (127.64.0.0 and up: never 127.0.0.x, which tests and the cluster's PROXY source use). Each of
    62,500 agents per /16, host parts 1-250."""
    return f"127.{64 + index // 62_500}.{(index // 250) % 250 + 1}.{index % 250 + 1}"


class IdleAgents:
    def __init__(self, args: argparse.Namespace, agents: list[list[str]]) -> None:
        self.url = args.url.rstrip("/") + ("/agent" if args.protocol == "broker" else "/echo")
        self.protocol = args.protocol
        self.ca = args.ca
        self.agents = agents
        self.sem = asyncio.Semaphore(args.concurrency)
        self.tasks: list[asyncio.Task[None]] = []
        self.connected = 0
        self.connects = 0
        self.attempts = 0
        self.failed = 0
        self.failed_kinds: dict[str, int] = {}
        """Failed attempts by exception class (a timeout, a reset, a refused TLS handshake …)."""
        self.gave_up = 0
        self.drops = 0
        self.pings = 0
        self.live: dict[int, ClientConnection] = {}
        self.mode: str = args.heartbeat
        self.interval: float = args.interval
        self.holding = False
        """Agents that have not yet made their first attempt do not make it."""
        self.source: str | None = getattr(args, "source", None)
        """The local address to connect from (None: the kernel's choice; ``each``: every agent its own,
        :func:`agent_address`)."""
        self.first: int = getattr(args, "start", 0)

    def status(self) -> dict[str, Any]:
        return {
            "event": "status",
            "t": time.time(),
            "started": len(self.tasks),
            "connected": self.connected,
            "connects": self.connects,
            "attempts": self.attempts,
            "failed": self.failed,
            "failed_kinds": self.failed_kinds,
            "gave_up": self.gave_up,
            "drops": self.drops,
            "pings": self.pings,
        }

    def start(self, n: int) -> None:
        while len(self.tasks) < min(n, len(self.agents)):
            self.tasks.append(asyncio.create_task(self.agent(len(self.tasks))))

    def _local(self, index: int) -> tuple[str, int] | None:
        if self.source == "each":
            return (agent_address(self.first + index), 0)
        return (self.source, 0) if self.source else None

    async def _open(self, ctx: ssl.SSLContext, name: str, index: int = 0) -> ClientConnection:
        ws = await connect(
            self.url,
            ssl=ctx,
            ping_interval=None,
            compression=None,
            open_timeout=15,
            close_timeout=5,
            max_size=MAX_SIZE,
            local_addr=self._local(index),
        )
        try:
            await ws.send(
                json.dumps({"type": "hello", "versions": [1], "role": "agent", "software": "bench"})
            )
            await recv_json(ws, "hello", timeout=15)
            await ws.send(
                json.dumps({"type": "agent_status", "machine_name": name, "agent_version": "bench"})
            )
        except BaseException:
            await ws.close()
            raise
        return ws

    def _session(self, ctx: ssl.SSLContext) -> Any:
        """Per-agent state for :meth:`_offers` and :meth:`_opened` (none here)."""
        return None

    def _offers(self, session: Any) -> bool:
        """Whether the next attempt offers a TLS session (never here)."""
        return False

    def _opened(self, ws: ClientConnection, session: Any, offered: bool) -> None:
        """A connection is up (after the broker's hello)."""

    async def agent(self, index: int) -> None:
        """One agent: connect, serve, reconnect with the real agent's backoff until told to stop."""
        _serial, contract, pem = self.agents[index]
        ctx = client_context(self.ca, pem)
        session = self._session(ctx)
        backoff = Backoff()
        first = True
        while True:
            started = time.monotonic()
            try:
                async with self.sem:
                    if first and self.holding:
                        return
                    first = False
                    self.attempts += 1
                    offered = self._offers(session)
                    ws = await self._open(ctx, f"pc-{contract}", index)
            except (OSError, WebSocketException, TimeoutError, RuntimeError) as exc:
                self.failed += 1
                kind = type(exc).__name__
                self.failed_kinds[kind] = self.failed_kinds.get(kind, 0) + 1
                if any(code in str(exc) for code in PERMANENT):
                    self.gave_up += 1
                    return
                await asyncio.sleep(backoff.next_delay())
                continue
            self._opened(ws, session, offered)
            self.connected += 1
            self.connects += 1
            self.live[index] = ws
            try:
                await self._serve(ws)
            finally:
                self.live.pop(index, None)
                self.connected -= 1
                self.drops += 1
            if ws.close_reason in PERMANENT:
                self.gave_up += 1
                return
            if time.monotonic() - started >= STABLE_AFTER:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _serve(self, ws: ClientConnection) -> None:
        """Read (and drop) what the server sends until the connection ends; heartbeats are sent by
        :meth:`heartbeats`."""
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def heartbeats(self) -> None:
        """``connected / interval`` heartbeats a second over the live connections, round-robin, each
        at its own time (as independent agents' heartbeats arrive, not in bursts the server could
        take in one read)."""
        order: list[int] = []
        position = 0
        n = 0
        due = time.monotonic()
        while True:
            live = len(self.live)
            if self.mode == "none" or self.interval <= 0 or not live:
                await asyncio.sleep(0.1)
                due = time.monotonic()
                continue
            setting = (self.mode, self.interval)
            due += self.interval / live
            delay = due - time.monotonic()
            if delay < -1.0:  # fell behind (a stall): do not catch up in a burst
                due = time.monotonic()
            while delay > 0 and (self.mode, self.interval) == setting:
                await asyncio.sleep(min(delay, 0.1))  # a switch of heartbeat takes effect at once
                delay = due - time.monotonic()
            if (self.mode, self.interval) != setting:
                due = time.monotonic()
                continue
            if position >= len(order):
                order, position = list(self.live), 0
            ws = self.live.get(order[position])
            position += 1
            if ws is None:
                continue
            n += 1
            try:
                if self.mode == "frame":
                    waiter = asyncio.ensure_future(await ws.ping())
                    waiter.add_done_callback(ignore_outcome)
                else:
                    await ws.send(json.dumps({"type": "ping", "id": f"c{n}", "time": time.time()}))
            except (ConnectionClosed, RuntimeError):
                continue
            self.pings += 1


def ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a Pong that never came (connection closed): retrieved, not logged


async def drive(fleet: IdleAgents, args: argparse.Namespace) -> None:
    """Run ``fleet`` under the orchestrator's commands on stdin (connect, heartbeat, hold,
    concurrency), reporting its status twice a second, until ``quit`` or ``--max-seconds``."""
    queue = commands()

    async def report() -> None:
        while True:
            emit(fleet.status())
            await asyncio.sleep(0.5)

    reporter = asyncio.create_task(report())
    beats = asyncio.create_task(fleet.heartbeats())
    async for cmd in until_quit(queue, args.max_seconds):
        if cmd["cmd"] == "connect":
            fleet.start(int(cmd["n"]))
        elif cmd["cmd"] == "heartbeat":
            fleet.mode, fleet.interval = str(cmd["mode"]), float(cmd["interval"])
        elif cmd["cmd"] == "hold":  # start no more agents (the orchestrator's memory guard)
            fleet.holding = True
        elif cmd["cmd"] == "concurrency":  # later attempts only; real agents have no such limit
            fleet.sem = asyncio.Semaphore(int(cmd["n"]))
    reporter.cancel()
    beats.cancel()
    emit(fleet.status())


async def run_idle(args: argparse.Namespace) -> None:
    manifest = json.loads(Path(args.manifest).read_text())
    idle = IdleAgents(args, manifest["agents"][args.start : args.start + args.count])
    await drive(idle, args)
    for task in idle.tasks:
        task.cancel()
    await asyncio.gather(*idle.tasks, return_exceptions=True)
