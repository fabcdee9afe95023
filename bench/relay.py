"""Sections 3 and 4: relay throughput (broker beside a bare relay and raw TLS) and the latency
added under load, plus the py-spy profile of the relay's hot path.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Child, KiB, Usage
from bench.plans import NO_GROWTH, STOCK, TUNED
from bench.processes import Context, Server, load_process, running
from bench.profiling import finish_profile, start_profile


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
