"""Sections 1 and 2: idle agents (memory and CPU per agent, beside the echo baseline), the
reconnect storm after a broker restart, and the memory tuning matrix.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from bench.common import KiB, Usage
from bench.plans import STOCK, TUNED
from bench.processes import AgentFleet, Context, Server, running
from bench.profiling import finish_profile, start_profile


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
        (f"TLS buffer {TUNED // KiB} KiB (broker default)", TUNED, ()),
        (f"{TUNED // KiB} KiB + malloc_trim(0) every 2 s", TUNED, ("--malloc-trim", "2")),
    ]
    rows = []
    for label, buffer, extra in variants:
        with running(Server(ctx, "broker", tls_read_buffer=buffer, extra=extra)) as server:
            ramp, _ = idle_ramp(ctx, server, (n,), protocol="broker", window=3.0)
        rows.append(
            {"variant": label, "tls_read_buffer": buffer or 256 * KiB, "extra": list(extra), **ramp[0]}
        )
    return rows
