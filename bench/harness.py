"""The orchestrator: starts broker and baseline servers and load processes, collects the figures.

Each figure is measured beside its baseline in the same run (the machine is shared and noisy, so
ratios travel better than absolute numbers). Nothing here asserts a time: ``targets`` in the
report say whether a stated goal was met on this run.

The sections live in modules named for what they measure (``bench.idle_agents``, ``bench.relay``,
``bench.enrollment``); the plans in ``bench.plans``; the processes in ``bench.processes``; py-spy in
``bench.profiling``. Every name is re-exported here, so ``from bench.harness import PLANS,
AgentFleet, Context, Server`` keeps working.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures
from bench.common import PYTHON, ROOT, machine_info
from bench.enrollment import enrollment
from bench.idle_agents import idle_ramp, reconnect_storm, tuning_matrix
from bench.plans import AGENTS_PER_PROCESS, NO_GROWTH, PLANS, STOCK, TUNED, Plan
from bench.processes import AgentFleet, Context, Server, load_process, running, spread
from bench.profiling import finish_profile, start_profile, summarize_profile
from bench.relay import latency, relay_profile, relay_throughput

__all__ = [
    "AGENTS_PER_PROCESS",
    "NO_GROWTH",
    "PLANS",
    "SECTIONS",
    "STOCK",
    "TUNED",
    "AgentFleet",
    "Context",
    "Plan",
    "Server",
    "enrollment",
    "finish_profile",
    "frame_pipeline",
    "idle_ramp",
    "latency",
    "load_process",
    "reconnect_storm",
    "relay_profile",
    "relay_throughput",
    "run",
    "running",
    "spread",
    "start_profile",
    "summarize_profile",
    "tuning_matrix",
]


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
