"""One load process of the cluster bench: ``python -m bench.fleet_agents --url … --start S --count N``.

Idle agents as ``bench.loadgen idle`` makes them (a real client certificate each, ``hello``,
``agent_status``, a WebSocket Ping every ``interval`` s per agent on its own schedule, from one
heap per process) and reconnecting as ``agent.connection.AgentConnection`` does:

- after a drop or a failed attempt, sleep ``agent.backoff.Backoff().next_delay()`` (1 s doubling
  to 60 s, full jitter, at least 0.2 s) and try again; a connection that lasted
  ``STABLE_AFTER`` (30 s) resets the backoff; only a permanent refusal (revoked or unknown
  certificate, terminated contract) ends an agent ("gave up");
- TLS session resumption as the agent (``agent.tls_session``): each agent's own context offers its
  last session, remembered once the broker's ``hello`` has arrived (the TLS 1.3 ticket comes after
  the handshake). The status line counts ``offered`` and ``resumed`` handshakes.

Commands on stdin (JSON lines): ``{"cmd": "connect", "n": N}``, ``{"cmd": "heartbeat", "mode":
"frame"|"json"|"none", "interval": s}``, ``{"cmd": "concurrency", "n": N}`` (attempts in
flight from now on: the ramp is paced, a storm is not), ``{"cmd": "hold"}`` (agents that have not
tried yet never do), ``{"cmd": "quit"}``. A status line every 0.5 s on stdout.
Bounded: the process ends after ``--max-seconds`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agent.tls_session import SessionCache, enable_resumption
from bench.common import raise_nofile
from bench.load_idle import drive, ignore_outcome
from bench.loadgen import (
    IdleAgents,
)
from broker import tuning


class ResumingAgents(IdleAgents):
    """``IdleAgents`` whose reconnects offer the last TLS session, as the real agent's do."""

    def __init__(self, args: argparse.Namespace, agents: list[list[str]]) -> None:
        super().__init__(args, agents)
        self.resume = not args.no_resume
        self.offered = 0
        self.resumed = 0

    def status(self) -> dict[str, Any]:
        return {**super().status(), "offered": self.offered, "resumed": self.resumed}

    async def heartbeats(self) -> None:
        """Every connected agent sends a heartbeat every ``interval`` s on its own schedule, as the
        real agent's timer does: the first at a random point of its first interval (a fleet that
        connected together does not ping together), then every ``interval`` s after the last. One
        heap of due times for the process, no task per agent. A stall of this process is caught up
        at once, as the agents' own timers would fire: an earlier scheduler paced the whole process at
        ``connected / interval`` a second and, when 20 load processes starved each other of CPU at
        100,000 agents, fell behind for good, so agents went silent past the broker's idle timeout
        and reconnected, and the "idle" window measured their handshakes (docs/PERFORMANCE.md)."""
        due: list[tuple[float, int]] = []
        scheduled: set[int] = set()
        checked = 0.0
        while True:
            now = time.monotonic()
            if self.mode == "none" or self.interval <= 0:
                due.clear()
                scheduled.clear()
                await asyncio.sleep(0.1)
                continue
            if now - checked >= 1.0:  # agents connected since the last look get their schedule
                checked = now
                for index in self.live.keys() - scheduled:
                    scheduled.add(index)
                    heapq.heappush(due, (now + random.uniform(0, self.interval), index))
            while due and due[0][0] <= now:
                at, index = heapq.heappop(due)
                ws = self.live.get(index)
                if ws is None:  # gone: scheduled again when it is back
                    scheduled.discard(index)
                    continue
                heapq.heappush(due, (max(at + self.interval, now), index))
                try:
                    if self.mode == "frame":
                        waiter = asyncio.ensure_future(await ws.ping())
                        waiter.add_done_callback(ignore_outcome)
                    else:
                        ping = {"type": "ping", "id": f"c{self.pings}", "time": time.time()}
                        await ws.send(json.dumps(ping))
                except (ConnectionClosed, RuntimeError):
                    continue
                self.pings += 1
            await asyncio.sleep(min(0.1, max(0.0, due[0][0] - time.monotonic())) if due else 0.1)

    def _session(self, ctx: ssl.SSLContext) -> SessionCache:
        cache = SessionCache()
        if self.resume:
            enable_resumption(ctx, cache)
        return cache

    def _offers(self, session: SessionCache) -> bool:
        return session.session is not None

    def _opened(self, ws: ClientConnection, session: SessionCache, offered: bool) -> None:
        ssl_object = ws.transport.get_extra_info("ssl_object")
        if offered:
            self.offered += 1
            if ssl_object is not None and ssl_object.session_reused:
                self.resumed += 1
        session.remember(ssl_object)  # after the broker's hello: the ticket has arrived


async def run(args: argparse.Namespace) -> None:
    agents = json.loads(Path(args.manifest).read_text())["agents"][args.start : args.start + args.count]
    await drive(ResumingAgents(args, agents), args)
    sys.stdout.flush()
    # Leave without closing thousands of connections one by one: the exit closes every socket.
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_agents", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="wss://127.0.0.1:PORT")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--protocol", choices=("broker", "echo"), default="broker")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64, help="connection attempts in flight")
    parser.add_argument("--heartbeat", choices=("frame", "json", "none"), default="frame")
    parser.add_argument(
        "--interval", type=float, default=300.0, help="seconds between one agent's heartbeats"
    )
    parser.add_argument(
        "--source",
        default=None,
        help="local address of the agents' sockets (127.0.0.N), or 'each': every agent its own",
    )
    parser.add_argument("--no-resume", action="store_true", help="full TLS handshakes on every reconnect")
    parser.add_argument("--max-seconds", type=float, default=1200.0)
    args = parser.parse_args(argv)
    raise_nofile()
    tuning.set_tls_read_buffer(tuning.DEFAULT_TLS_READ_BUFFER)  # keeps the load processes small
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
