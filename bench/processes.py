"""The processes of a run: its context (data dir, enrolled agents), the broker or a baseline
server on a fixed port, load processes, and a fleet of simulated idle agents spread over them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Child, free_port
from bench.plans import AGENTS_PER_PROCESS, Plan


@dataclass
class Context:
    plan: Plan
    data_dir: Path
    manifest: Path
    ca: str
    fingerprint: str
    n_agents: int
    next_agent: int = 0
    log: Callable[[str], None] = print
    profiles: dict[str, Any] = field(default_factory=dict)

    def take_agents(self, n: int) -> int:
        """A fresh range of agents (support requests are limited per subscriber and hour)."""
        first = self.next_agent
        self.next_agent += n  # relay and latency sessions come after the idle agents' range
        if self.next_agent > self.n_agents:
            raise RuntimeError("not enough enrolled agents for this plan")
        return first


class Server:
    """The broker (through bench.launcher) or a baseline server, on a fixed port."""

    def __init__(self, ctx: Context, kind: str, *, tls_read_buffer: int, extra: tuple[str, ...] = ()) -> None:
        self.ctx = ctx
        self.kind = kind
        self.tls_read_buffer = tls_read_buffer
        self.extra = extra
        self.port = free_port()
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def start(self) -> Server:
        buffer = ("--tls-read-buffer", str(self.tls_read_buffer))
        if self.kind == "broker":
            args = [
                "-m",
                "bench.launcher",
                *buffer,
                *self.extra,
                "--",
                "--data-dir",
                str(self.ctx.data_dir),
                "serve",
                "--port",
                str(self.port),
                "--hours",
                "00:00-00:00",
                "--log-level",
                "WARNING",
            ]
            self.child = Child(args, name="broker")
            self.child.wait_text("broker listening", timeout=60)
        else:
            args = [
                "-m",
                "bench.baseline_server",
                self.kind,
                "--data-dir",
                str(self.ctx.data_dir),
                "--port",
                str(self.port),
                *buffer,
            ]
            self.child = Child(args, name=f"baseline-{self.kind}")
            self.child.wait_for("listening", timeout=60)
        time.sleep(0.5)
        return self

    def stop(self, timeout: float = 180.0) -> float:
        t0 = time.monotonic()
        if self.child is not None:
            self.child.stop(timeout)
            self.child = None
        return time.monotonic() - t0


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def load_process(ctx: Context, mode: str, url: str, *args: str, name: str) -> Child:
    return Child(
        ["-m", "bench.loadgen", mode, "--url", url, "--ca", ctx.ca, "--manifest", str(ctx.manifest), *args],
        name=name,
    )


def spread(n: int, shares: list[int]) -> list[int]:
    """``n`` agents over processes holding ``shares`` each, as evenly as the shares allow: the
    smallest share is filled first, so what it cannot take goes to the larger ones."""
    if n > sum(shares):
        raise ValueError(f"{n} agents do not fit in {sum(shares)}")
    per = [0] * len(shares)
    remaining = n
    order = sorted(range(len(shares)), key=lambda i: shares[i])
    for left, i in enumerate(order):
        per[i] = min(shares[i], math.ceil(remaining / (len(order) - left)))
        remaining -= per[i]
    return per


class AgentFleet:
    """Simulated agents spread over load processes of AGENTS_PER_PROCESS each."""

    def __init__(
        self, ctx: Context, server: Server, total: int, protocol: str, extra: tuple[str, ...] = ()
    ) -> None:
        first = 0  # idle agents make no support requests: every fleet may use the same ones
        self.children: list[Child] = []
        self.shares: list[int] = []
        for start in range(0, total, AGENTS_PER_PROCESS):
            count = min(AGENTS_PER_PROCESS, total - start)
            self.shares.append(count)
            self.children.append(
                load_process(
                    ctx,
                    "idle",
                    server.url,
                    "--protocol",
                    protocol,
                    "--start",
                    str(first + start),
                    "--count",
                    str(count),
                    *extra,
                    name=f"agents-{start}",
                )
            )

    def status(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for child in self.children:
            last = child.last("status") or {}
            for key in ("connected", "connects", "attempts", "failed", "gave_up", "drops", "pings"):
                total[key] = total.get(key, 0) + int(last.get(key, 0))
        return total

    def connect(self, n: int, *, timeout: float) -> float:
        """Ask for ``n`` agents in all; wait until they are all connected; returns the seconds taken."""
        t0 = time.monotonic()
        per = spread(n, self.shares)
        for child, count in zip(self.children, per, strict=True):
            child.send({"cmd": "connect", "n": count})
        while time.monotonic() - t0 < timeout:
            if self.status().get("connected", 0) >= n:
                break
            time.sleep(0.2)
        return time.monotonic() - t0

    def send_all(self, command: dict[str, Any]) -> None:
        for child in self.children:
            child.send(command)

    def stop(self) -> None:
        for child in self.children:
            child.send({"cmd": "quit"})
        for child in self.children:
            child.stop(60)
