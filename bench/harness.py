"""The orchestrator: starts broker and baseline servers and load processes, collects the figures.

Each figure is measured beside its baseline in the same run (the machine is shared and noisy, so
ratios travel better than absolute numbers). Nothing here asserts a time: ``targets`` in the
report say whether a stated goal was met on this run.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures
from bench.common import PYTHON, ROOT, Child, KiB, Usage, free_port, machine_info
from broker import tuning

AGENTS_PER_PROCESS = 2500
"""Simulated agents per load process (the open-file limit is 20,000 per process)."""

STOCK = 0
TUNED = tuning.DEFAULT_TLS_READ_BUFFER
"""The broker's TLS read buffer for idle connections, as shipped (4 KiB)."""
NO_GROWTH = ("--session-read-buffer", "0")
"""Keep the idle buffer when an agent starts streaming (the broker grows it to 256 KiB)."""
"""``--tls-read-buffer 0``: asyncio's own 256 KiB."""


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    idle_counts: tuple[int, ...]
    stock_idle_counts: tuple[int, ...]
    idle_window: float
    tuning_n: int
    storm_deadline: float
    relay_sessions: tuple[int, ...]
    relay_sizes: tuple[int, ...]
    relay_seconds: float
    relay_max_messages: int
    latency_levels: tuple[int, ...]
    latency_seconds: float
    enroll_count: int
    csr_count: int
    frame_pipeline: tuple[str, ...] | None
    profile_seconds: float


PLANS = {
    "full": Plan(
        name="full",
        idle_counts=(1000, 5000, 10000),
        stock_idle_counts=(1000, 5000),
        idle_window=10.0,
        tuning_n=2000,
        storm_deadline=120.0,
        relay_sessions=(1, 50),
        relay_sizes=(16 * KiB, 64 * KiB),
        relay_seconds=4.0,
        relay_max_messages=200_000,
        latency_levels=(0, 50, 200),
        latency_seconds=8.0,
        enroll_count=200,
        csr_count=1000,
        frame_pipeline=("--frames", "40", "--seconds", "5"),
        profile_seconds=6.0,
    ),
    "quick": Plan(
        name="quick",
        idle_counts=(200, 1000),
        stock_idle_counts=(1000,),
        idle_window=4.0,
        tuning_n=500,
        storm_deadline=60.0,
        relay_sessions=(1, 10),
        relay_sizes=(16 * KiB, 64 * KiB),
        relay_seconds=2.0,
        relay_max_messages=50_000,
        latency_levels=(0, 20),
        latency_seconds=3.0,
        enroll_count=40,
        csr_count=200,
        frame_pipeline=("--frames", "10", "--seconds", "2"),
        profile_seconds=3.0,
    ),
    "smoke": Plan(
        name="smoke",
        idle_counts=(20,),
        stock_idle_counts=(),
        idle_window=1.0,
        tuning_n=0,
        storm_deadline=30.0,
        relay_sessions=(1,),
        relay_sizes=(16 * KiB,),
        relay_seconds=2.0,
        relay_max_messages=200,
        latency_levels=(0,),
        latency_seconds=1.0,
        enroll_count=4,
        csr_count=20,
        frame_pipeline=None,
        profile_seconds=0.0,
    ),
}


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


# -- servers ----------------------------------------------------------------------------------------


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


# -- 1 & 2: idle agents and the reconnect storm ------------------------------------------------------


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


def _settle_rss(usage: Usage, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return usage.rss()


def idle_ramp(
    ctx: Context,
    server: Server,
    counts: tuple[int, ...],
    *,
    protocol: str,
    keep: bool = False,
    profile_at: int | None = None,
    window: float | None = None,
) -> tuple[list[dict[str, Any]], AgentFleet | None]:
    """Connect ``counts`` agents in steps; RSS per agent and idle CPU at each step."""
    usage = Usage(server.pid)
    rss0 = _settle_rss(usage, 1.0)
    fleet = AgentFleet(ctx, server, max(counts), protocol)
    rows: list[dict[str, Any]] = []
    previous = 0
    try:
        for n in counts:
            profiler = None
            if profile_at == n and ctx.plan.profile_seconds > 0:
                profiler = start_profile(server.pid, ctx, "connect", seconds=60)
            usage.restart()
            before = fleet.status()
            seconds = fleet.connect(n, timeout=240)
            connect_cpu = usage.cpu_fraction()
            if profiler is not None:
                finish_profile(profiler, ctx, "connect")
            status = fleet.status()
            rss = _settle_rss(usage)
            pings0 = fleet.status()["pings"]
            usage.restart()
            window = window or ctx.plan.idle_window
            time.sleep(window)
            cpu = usage.cpu_fraction()
            pings = fleet.status()["pings"] - pings0
            rows.append(
                {
                    "agents": n,
                    "connected": status["connected"],
                    "rss_mib": rss / 2**20,
                    "rss_base_mib": rss0 / 2**20,
                    "kib_per_agent": (rss - rss0) / n / KiB,
                    "idle_cpu_fraction": cpu,
                    "idle_cpu_us_per_agent_s": cpu / n * 1e6,
                    "pings_per_s": pings / window,
                    "connect_seconds": seconds,
                    "connects_per_s": (n - previous) / seconds if seconds > 0 else float("nan"),
                    "connect_cpu_fraction": connect_cpu,
                    "failed_handshakes": status["failed"] - before.get("failed", 0),
                }
            )
            ctx.log(
                f"  {server.kind:<6} buf={server.tls_read_buffer or 'stock'} {n:>6} agents: "
                f"{rows[-1]['kib_per_agent']:.1f} KiB/agent, idle CPU {cpu * 100:.2f} %, "
                f"connect {seconds:.1f} s"
            )
            previous = n
    except BaseException:
        fleet.stop()
        raise
    if keep:
        return rows, fleet
    fleet.stop()
    return rows, None


def reconnect_storm(ctx: Context, server: Server, fleet: AgentFleet, n: int) -> dict[str, Any]:
    """Restart the broker with ``n`` agents connected; time until all are back."""
    before = fleet.status()
    t_kill = time.monotonic()
    shutdown = server.stop()
    t_down = time.monotonic()
    server.start()
    t_listen = time.monotonic()
    usage = Usage(server.pid)
    peak = 0.0
    samples: list[tuple[float, int]] = []
    back_at: float | None = None
    proc = psutil.Process(server.pid)
    times0 = proc.cpu_times()  # not from 0: the new process already spent CPU starting up
    last_cpu_t, last_cpu = time.monotonic(), times0.user + times0.system
    while time.monotonic() - t_listen < ctx.plan.storm_deadline:
        time.sleep(0.5)
        now = time.monotonic()
        times = proc.cpu_times()
        cpu = times.user + times.system
        if now > last_cpu_t:
            peak = max(peak, (cpu - last_cpu) / (now - last_cpu_t))
        last_cpu_t, last_cpu = now, cpu
        status = fleet.status()
        samples.append((round(now - t_kill, 2), status["connected"]))
        if status["connected"] >= n and status["connects"] - before["connects"] >= n:
            back_at = now
            break
    after = fleet.status()

    def reached(share: float) -> float | None:
        return next((t for t, c in samples if c >= share * n), None)

    result = {
        "agents": n,
        "seconds_to_99pct_from_kill": reached(0.99),
        "seconds_to_99_9pct_from_kill": reached(0.999),
        "shutdown_seconds": t_down - t_kill,
        "restart_seconds": t_listen - t_down,
        "all_back_seconds_from_kill": None if back_at is None else back_at - t_kill,
        "all_back_seconds_from_listen": None if back_at is None else back_at - t_listen,
        "reconnected": after["connects"] - before["connects"],
        "connected_at_end": after["connected"],
        "failed_handshakes": after["failed"] - before["failed"],
        "gave_up": after["gave_up"] - before["gave_up"] + max(0, n - after["connected"]),
        "peak_cpu_fraction": peak,
        "mean_cpu_fraction": usage.cpu_fraction(),
        "broker_shutdown_seconds": shutdown,
        "timeline": samples[:: max(1, len(samples) // 40)] + samples[-1:],
    }
    ctx.log(
        f"  storm {n} agents: all back {result['all_back_seconds_from_kill']} s after SIGTERM "
        f"(shutdown {shutdown:.1f} s), failed handshakes {result['failed_handshakes']}, "
        f"peak CPU {peak * 100:.0f} %"
    )
    return result


def tuning_matrix(ctx: Context) -> list[dict[str, Any]]:
    """Per-connection memory of the broker under each setting, at ``plan.tuning_n`` idle agents."""
    n = ctx.plan.tuning_n
    variants: list[tuple[str, int, tuple[str, ...]]] = [
        ("asyncio default (256 KiB TLS buffer)", STOCK, ()),
        ("TLS buffer 16 KiB", 16 * KiB, ()),
        ("TLS buffer 4 KiB (broker default)", TUNED, ()),
        ("4 KiB + malloc_trim(0) every 2 s", TUNED, ("--malloc-trim", "2")),
    ]
    rows = []
    for label, buffer, extra in variants:
        with running(Server(ctx, "broker", tls_read_buffer=buffer, extra=extra)) as server:
            ramp, _ = idle_ramp(ctx, server, (n,), protocol="broker", window=3.0)
        rows.append(
            {"variant": label, "tls_read_buffer": buffer or 256 * KiB, "extra": list(extra), **ramp[0]}
        )
    return rows


# -- 3 & 4: relay throughput and latency ------------------------------------------------------------


def _relay_process(ctx: Context, server: Server, target: str, sessions: int, name: str) -> Child:
    first = ctx.take_agents(sessions) if target == "broker" else 0
    child = load_process(
        ctx,
        "relay",
        server.url,
        "--target",
        target,
        "--sessions",
        str(sessions),
        "--first",
        str(first),
        name=name,
    )
    child.wait_for("ready", timeout=120 + sessions)
    return child


def relay_throughput(ctx: Context) -> list[dict[str, Any]]:
    plan = ctx.plan
    configs: list[tuple[str, str, int, tuple[str, ...]]] = [
        ("broker", "broker", TUNED, ()),  # as shipped: 4 KiB idle, 256 KiB once an agent streams
        ("broker, no growth", "broker", TUNED, NO_GROWTH),
        ("broker", "broker", STOCK, ()),
        ("bare relay", "relay", TUNED, ()),
        ("bare relay", "relay", STOCK, ()),
        ("raw TLS", "sink", STOCK, ()),
    ]
    rows: list[dict[str, Any]] = []
    for label, kind, buffer, extra in configs:
        target = {"broker": "broker", "relay": "bare", "sink": "sink"}[kind]
        with running(Server(ctx, kind, tls_read_buffer=buffer, extra=extra)) as server:
            for sessions in plan.relay_sessions:
                child = _relay_process(ctx, server, target, sessions, name=f"relay-{kind}-{sessions}")
                try:
                    for size in plan.relay_sizes:
                        mark = child.mark()
                        usage = Usage(server.pid)
                        child.send(
                            {
                                "cmd": "throughput",
                                "size": size,
                                "seconds": plan.relay_seconds,
                                "max_messages": plan.relay_max_messages,
                            }
                        )
                        result = child.wait_for("result", timeout=plan.relay_seconds + 60, after=mark)
                        cpu = usage.cpu_fraction()
                        elapsed = float(result["elapsed"])
                        row = {
                            "server": label,
                            "tls_read_buffer": buffer or 256 * KiB,
                            "sessions": sessions,
                            "size": size,
                            "messages": result["messages"],
                            "mb_per_s": result["bytes"] / elapsed / 1e6,
                            "messages_per_s": result["messages"] / elapsed,
                            "server_cpu_fraction": cpu,
                            "mb_per_cpu_s": result["bytes"] / elapsed / 1e6 / cpu
                            if cpu > 0
                            else float("nan"),
                            "refresh_requests": result.get("refresh_requests", 0),
                        }
                        rows.append(row)
                        ctx.log(
                            f"  {label:<10} buf={buffer or 'stock':<6} {sessions:>3} sessions"
                            f" {size // KiB:>3} KiB: {row['mb_per_s']:.0f} MB/s,"
                            f" {row['messages_per_s']:.0f} msg/s,"
                            f" server CPU {cpu * 100:.0f} %"
                        )
                finally:
                    child.send({"cmd": "quit"})
                    child.stop(30)
    return rows


def relay_profile(ctx: Context) -> None:
    """py-spy on the broker while 50 (or the plan's most) sessions push 64 KiB updates."""
    if ctx.plan.profile_seconds <= 0:
        return
    sessions = max(ctx.plan.relay_sessions)
    with running(Server(ctx, "broker", tls_read_buffer=TUNED)) as server:
        child = _relay_process(ctx, server, "broker", sessions, name="relay-profile")
        try:
            mark = child.mark()
            seconds = ctx.plan.profile_seconds
            child.send({"cmd": "throughput", "size": 64 * KiB, "seconds": seconds + 2, "max_messages": 10**7})
            time.sleep(0.5)
            profiler = start_profile(server.pid, ctx, "relay", seconds=seconds)
            child.wait_for("result", timeout=seconds + 60, after=mark)
            finish_profile(profiler, ctx, "relay")
        finally:
            child.send({"cmd": "quit"})
            child.stop(30)


def latency(ctx: Context) -> list[dict[str, Any]]:
    plan = ctx.plan
    rows: list[dict[str, Any]] = []
    for label, kind in (("broker", "broker"), ("bare relay", "relay")):
        target = "broker" if kind == "broker" else "bare"
        for level in plan.latency_levels:
            with running(Server(ctx, kind, tls_read_buffer=TUNED)) as server:
                background: list[Child] = []
                probe: Child | None = None
                try:
                    for start in range(0, level, 100):
                        count = min(100, level - start)
                        background.append(
                            _relay_process(ctx, server, target, count, name=f"bg-{kind}-{level}-{start}")
                        )
                    probe = _relay_process(ctx, server, target, 1, name=f"probe-{kind}-{level}")
                    usage = Usage(server.pid)
                    marks = [c.mark() for c in background]
                    for child in background:
                        child.send(
                            {
                                "cmd": "paced",
                                "size": 20 * KiB,
                                "seconds": plan.latency_seconds + 1.5,
                                "rate": 30,
                                "measure": False,
                            }
                        )
                    time.sleep(0.5)
                    mark = probe.mark()
                    probe.send(
                        {
                            "cmd": "paced",
                            "size": 20 * KiB,
                            "seconds": plan.latency_seconds,
                            "rate": 30,
                            "input_rate": 30,
                        }
                    )
                    result = probe.wait_for("result", timeout=plan.latency_seconds + 60, after=mark)
                    cpu = usage.cpu_fraction()
                    bg = [
                        c.wait_for("result", timeout=plan.latency_seconds + 60, after=m)
                        for c, m in zip(background, marks, strict=True)
                    ]
                    offered = sum(r["sent"] for r in bg)
                    delivered = sum(r["messages"] for r in bg)
                    seconds = plan.latency_seconds + 1.5
                    row = {
                        "server": label,
                        "active_sessions": level,
                        "update": result["update_latency"],
                        "input": result["input_latency"],
                        "background_updates_per_s_offered": offered / seconds,
                        "background_updates_per_s_delivered": delivered / seconds,
                        "background_target_per_s": level * 30,
                        "server_cpu_fraction": cpu,
                    }
                    rows.append(row)
                    ctx.log(
                        f"  {label:<10} {level:>3} sessions: update p50 {row['update']['p50_ms']:.2f} ms"
                        f" p99 {row['update']['p99_ms']:.2f} ms; input p50 {row['input']['p50_ms']:.2f} ms"
                        f" p99 {row['input']['p99_ms']:.2f} ms; server CPU {cpu * 100:.0f} %"
                    )
                finally:
                    children = [*background, *([probe] if probe is not None else [])]
                    for child in children:
                        child.send({"cmd": "quit"})
                    for child in children:
                        child.stop(30)
    return rows


# -- 5: enrollment ----------------------------------------------------------------------------------


def enrollment(ctx: Context) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from broker.config import BrokerConfig
    from broker.pki import load_pki
    from certs import build_csr, generate_private_key

    plan = ctx.plan
    ca = load_pki(BrokerConfig(data_dir=ctx.data_dir), now=datetime.now(UTC), env={}).ca
    csrs = [build_csr(generate_private_key(), common_name=f"S-{i}") for i in range(plan.csr_count)]
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i, csr in enumerate(csrs):
        ca.sign_client_csr(csr, expected_common_name=f"S-{i}", now=now)
    sign_rate = plan.csr_count / (time.perf_counter() - t0)
    key = ec.generate_private_key(ec.SECP256R1())
    t0 = time.perf_counter()
    for i in range(plan.csr_count):
        key.sign(i.to_bytes(8, "big") * 4, ec.ECDSA(hashes.SHA256()))
    ecdsa_rate = plan.csr_count / (time.perf_counter() - t0)

    tokens = fixtures.enrollment_tokens(ctx.data_dir, plan.enroll_count)
    tokens_path = ctx.data_dir / "bench-tokens.json"
    tokens_path.write_text(json.dumps(tokens))
    concurrency = "4"
    # The broker allows 20 enrollments per source address and minute (BrokerConfig
    # .enroll_attempts_per_minute); every load process here is 127.0.0.1, so it is lifted.
    lifted = ("--enroll-per-minute", "1000000")
    with running(Server(ctx, "broker", tls_read_buffer=TUNED, extra=lifted)) as server:
        child = load_process(
            ctx,
            "enroll",
            server.url,
            "--tokens",
            str(tokens_path),
            "--fingerprint",
            ctx.fingerprint,
            "--count",
            str(plan.enroll_count),
            "--concurrency",
            concurrency,
            "--max-seconds",
            "300",
            name="enroll",
        )
        full = child.wait_for("result", timeout=330)
        child.stop()
    with running(Server(ctx, "echo", tls_read_buffer=TUNED)) as server:
        child = load_process(
            ctx,
            "enroll",
            server.url,
            "--baseline",
            "--count",
            str(plan.enroll_count * 5),
            "--concurrency",
            concurrency,
            "--max-seconds",
            "300",
            name="connects",
        )
        base = child.wait_for("result", timeout=330)
        child.stop()
    result = {
        "csr_signs_per_s": sign_rate,
        "ecdsa_p256_signs_per_s": ecdsa_rate,
        "enrollments": full["done"],
        "enrollment_failures": full["failed"],
        "enrollments_per_s": full["done"] / full["elapsed"],
        "baseline_connects": base["done"],
        "baseline_connects_per_s": base["done"] / base["elapsed"],
        "concurrency": int(concurrency),
        "rate_limit_lifted": "enroll_attempts_per_minute (default 20 per address)",
    }
    ctx.log(
        f"  CSR signing {sign_rate:.0f}/s (raw ECDSA {ecdsa_rate:.0f}/s); enrollments "
        f"{result['enrollments_per_s']:.1f}/s (bare TLS WebSocket connects "
        f"{result['baseline_connects_per_s']:.0f}/s)"
    )
    return result


# -- 6: frame pipeline ------------------------------------------------------------------------------


def frame_pipeline(ctx: Context) -> dict[str, Any] | None:
    args = ctx.plan.frame_pipeline
    if args is None:
        return None
    try:
        out = subprocess.run(
            [PYTHON, "-m", "bench.frame_pipeline", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 600 s"}
    rows = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("static", "5%", "full") and len(parts) == 5:
            rows.append(
                {
                    "scene": parts[0],
                    "synthetic_fps": float(parts[1]),
                    "synthetic_kib_per_frame": float(parts[2]),
                    "capture_fps": None if parts[3] == "-" else float(parts[3]),
                    "capture_kib_per_frame": None if parts[4] == "-" else float(parts[4]),
                }
            )
    ctx.log("  " + "\n  ".join(out.stdout.strip().splitlines()[-5:]))
    return {"rows": rows, "output": out.stdout, "returncode": out.returncode, "stderr": out.stderr[-2000:]}


# -- profiling --------------------------------------------------------------------------------------


def start_profile(pid: int, ctx: Context, name: str, *, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        ctx.profiles[name] = {"error": "py-spy not installed (pip install py-spy)"}
        return None
    out = ctx.data_dir / f"profile-{name}.txt"
    return subprocess.Popen(
        [
            spy,
            "record",
            "--nonblocking",
            "--rate",
            "100",
            "--format",
            "raw",
            "-o",
            str(out),
            "-p",
            str(pid),
            "-d",
            str(math.ceil(seconds)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_profile(proc: subprocess.Popen[bytes] | None, ctx: Context, name: str) -> None:
    if proc is None:
        return
    proc.send_signal(2)  # SIGINT: py-spy writes what it has
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    path = ctx.data_dir / f"profile-{name}.txt"
    if not path.exists():
        ctx.profiles[name] = {"error": err.decode(errors="replace")[-500:]}
        return
    ctx.profiles[name] = summarize_profile(path.read_text())
    keep = ROOT / "bench" / "results" / f"profile-{name}.txt"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, keep)


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` → ``func (module.py)``."""
    if " (" not in frame:
        return frame
    func, where = frame.split(" (", 1)
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    shown = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{func} ({shown})"


def summarize_profile(text: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    idle = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if leaf.startswith(("select (", "poll (", "epoll")) or "selectors.py" in leaf:
            idle += count
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for f in set(frames):
            incl_counts[f] = incl_counts.get(f, 0) + count

    def ranked(counts: dict[str, int]) -> list[list[Any]]:
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [[name, round(100 * c / total, 1)] for name, c in rows]

    return {
        "samples": total,
        "idle_in_select_pct": round(100 * idle / total, 1) if total else 0.0,
        "self_pct": ranked(self_counts) if total else [],
        "inclusive_pct": ranked(incl_counts) if total else [],
    }


# -- the whole run ----------------------------------------------------------------------------------


SECTIONS = ("idle", "tuning", "relay", "latency", "enrollment", "frame_pipeline", "profile")


def run(
    plan: Plan,
    *,
    log: Callable[[str], None] = print,
    keep_data: bool = False,
    only: frozenset[str] = frozenset(SECTIONS),
) -> dict[str, Any]:
    started = time.time()
    report: dict[str, Any] = {
        "plan": asdict(plan),
        "machine": machine_info(),
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    try:
        budget = _agents_needed(plan)
        log(f"setting up {budget} enrolled agents in {tmp} …")
        fx = fixtures.create(tmp, budget)
        ctx = Context(
            plan=plan,
            data_dir=tmp,
            manifest=fx.write_manifest(),
            ca=fx.ca_path,
            fingerprint=fx.ca_fingerprint,
            n_agents=budget,
            next_agent=_idle_agents(plan),
            log=log,
        )
        report["setup_seconds"] = fx.setup_seconds

        if "idle" in only:
            log("1. idle agents (broker, tuned)")
            top = max(plan.idle_counts)
            with running(Server(ctx, "broker", tls_read_buffer=TUNED)) as broker:
                tuned, fleet = idle_ramp(
                    ctx, broker, plan.idle_counts, protocol="broker", keep=True, profile_at=top
                )
                assert fleet is not None
                try:
                    log("2. reconnect storm")
                    report["reconnect_storm"] = reconnect_storm(ctx, broker, fleet, top)
                finally:
                    fleet.stop()
            idle: dict[str, Any] = {"broker_tuned": tuned}
            log("1. idle agents (baselines and stock)")
            with running(Server(ctx, "echo", tls_read_buffer=TUNED)) as echo:
                idle["echo_tuned"], _ = idle_ramp(ctx, echo, plan.idle_counts, protocol="echo")
            if plan.stock_idle_counts:
                with running(Server(ctx, "broker", tls_read_buffer=STOCK)) as broker:
                    idle["broker_stock"], _ = idle_ramp(
                        ctx, broker, plan.stock_idle_counts, protocol="broker"
                    )
                with running(Server(ctx, "echo", tls_read_buffer=STOCK)) as echo:
                    idle["echo_stock"], _ = idle_ramp(ctx, echo, plan.stock_idle_counts, protocol="echo")
            report["idle"] = idle
        if plan.tuning_n and "tuning" in only:
            log(f"1b. memory tuning matrix at {plan.tuning_n} idle agents")
            report["tuning"] = tuning_matrix(ctx)
        if "relay" in only:
            log("3. relay throughput")
            report["relay"] = relay_throughput(ctx)
        if "latency" in only:
            log("4. added latency")
            report["latency"] = latency(ctx)
        if "enrollment" in only:
            log("5. enrollment")
            report["enrollment"] = enrollment(ctx)
        if "frame_pipeline" in only:
            log("6. frame pipeline")
            report["frame_pipeline"] = frame_pipeline(ctx)
        if plan.profile_seconds > 0 and "profile" in only:
            log("profile: relay hot path")
            relay_profile(ctx)
        report["profiles"] = ctx.profiles
    finally:
        if not keep_data:
            shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_seconds"] = time.time() - started
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in psutil.getloadavg()]
    return report


def _idle_agents(plan: Plan) -> int:
    return max(plan.tuning_n, *plan.idle_counts, *plan.stock_idle_counts)


def _agents_needed(plan: Plan) -> int:
    idle = _idle_agents(plan)
    relay = 4 * sum(plan.relay_sessions) + max(plan.relay_sessions)  # four broker configs + profile
    lat = sum(level + 1 for level in plan.latency_levels)
    return idle + relay + lat + 10
