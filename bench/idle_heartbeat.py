"""Idle CPU of the broker per 10,000 idle agents, by heartbeat, beside the bare echo server.

``python -m bench.idle_heartbeat [--agents 10000] [--window 20]``

Issue 15: a JSON ``ping`` every 20 s from each agent cost the broker 9.6 % of a core per 10,000
idle agents. This connects ``--agents`` simulated agents (real client certificates, real protocol,
``bench.loadgen idle``) to the broker, then measures the broker's CPU (from ``/proc``, psutil) over
``--window`` seconds under each heartbeat in turn, on the same connections:

- ``frame/300``: a WebSocket Ping frame every 300 s (the agent since issue 15, docs/heartbeat.md);
- ``json/20``:   a JSON ``ping`` every 20 s (agents before issue 15, still answered);
- ``frame/20``:  Ping frames at the old rate (what moving below JSON alone saves);
- ``none``:      no heartbeat at all (the floor: timers, the presence sweep).

Then the same agents against the bare ``websockets`` echo server (``bench.baseline_server echo``:
the same certificate and TLS settings, Ping frames answered inside websockets, a JSON ping echoed).
Heartbeats come from one scheduler per load process at exactly ``agents / interval`` a second.
Bounded: every phase has a deadline, the load processes stop by themselves after ``--max-seconds``.
Prints a table and one JSON line; docs/PERFORMANCE.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures
from bench.common import Usage, machine_info, raise_nofile
from bench.harness import PLANS, AgentFleet, Context, Server
from broker import tuning

TUNED = tuning.DEFAULT_TLS_READ_BUFFER
PHASES: tuple[tuple[str, str, float], ...] = (
    ("frame/300", "frame", 300.0),
    ("json/20", "json", 20.0),
    ("frame/20", "frame", 20.0),
    ("none", "none", 0.0),
)
PER = 10_000


def measure(
    ctx: Context, kind: str, agents: int, window: float, log: Any, settle: float = 3.0
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    server = Server(ctx, kind, tls_read_buffer=TUNED).start()
    try:
        protocol = "broker" if kind == "broker" else "echo"
        fleet = AgentFleet(ctx, server, agents, protocol, ("--heartbeat", "none", "--max-seconds", "1200"))
        try:
            took = fleet.connect(agents, timeout=300)
            connected = fleet.status().get("connected", 0)
            log(f"  {kind}: {connected} agents connected in {took:.1f} s")
            usage = Usage(server.pid)
            for name, mode, interval in PHASES:
                fleet.send_all({"cmd": "heartbeat", "mode": mode, "interval": interval})
                time.sleep(settle)  # the new rate settles
                pings0 = fleet.status()["pings"]
                usage.restart()
                time.sleep(window)
                cpu = usage.cpu_fraction()
                status = fleet.status()
                pings = (status["pings"] - pings0) / window
                rows.append(
                    {
                        "server": kind,
                        "heartbeat": name,
                        "agents": status["connected"],
                        "heartbeats_per_s": round(pings, 1),
                        "cpu_pct": round(cpu * 100, 2),
                        "cpu_pct_per_10k": round(cpu * 100 * PER / max(1, status["connected"]), 2),
                        "drops": status["drops"],
                    }
                )
                log(f"  {kind:<6} {name:<9} {pings:7.1f}/s  CPU {cpu * 100:5.2f} %  drops {status['drops']}")
        finally:
            fleet.stop()
    finally:
        server.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle_heartbeat", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--agents", type=int, default=10_000, help="idle agents (≤ 2,500 per load process)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of measurement per heartbeat")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after each switch of heartbeat")
    args = parser.parse_args(argv)
    raise_nofile()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.time()
    machine = machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="bench-heartbeat-"))
    try:
        log(f"setting up {args.agents} enrolled agents …")
        fx = fixtures.create(tmp, args.agents)
        ctx = Context(
            plan=PLANS["quick"],
            data_dir=tmp,
            manifest=fx.write_manifest(),
            ca=fx.ca_path,
            fingerprint=fx.ca_fingerprint,
            n_agents=args.agents,
            log=log,
        )
        rows = measure(ctx, "broker", args.agents, args.window, log, args.settle)
        rows += measure(ctx, "echo", args.agents, args.window, log, args.settle)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo = {r["heartbeat"]: r for r in rows if r["server"] == "echo"}
    print(
        "| server | heartbeat | agents | heartbeats/s | CPU % of a core | per 10,000 agents | × bare echo |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        base = echo.get(r["heartbeat"], {}).get("cpu_pct", 0.0)
        ratio = f"{r['cpu_pct'] / base:.2f}×" if r["server"] == "broker" and base else "-"
        print(
            f"| {'broker' if r['server'] == 'broker' else 'bare echo'} | {r['heartbeat']} | {r['agents']:,} "
            f"| {r['heartbeats_per_s']:.1f} | {r['cpu_pct']:.2f} | {r['cpu_pct_per_10k']:.2f} | {ratio} |"
        )
    result = {
        "bench": "idle_heartbeat",
        "started_at": started,
        "seconds": round(time.time() - started, 1),
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()],
        "rows": rows,
    }
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
