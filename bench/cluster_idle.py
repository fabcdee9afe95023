"""Idle agents over several broker processes on one port, and one process killed (issue 15).

``python -m bench.cluster_idle [--agents 100000] [--brokers 7] [--database sqlite|postgres]``

Seven processes for 100,000 agents: six would hold them under a 20,000 open-file limit, but after a
kill the five left would each need 20,000, above the broker's ceiling (``wire.listener``: the limit
minus 128), and the last agents could not come back (docs/cluster.md §5).

1. ``--brokers`` × ``broker serve --reuse-port --node-id nI`` (through ``bench.launcher``) on one
   port, one data dir and one database (the data dir's SQLite file, WAL, shared by every process;
   or a fresh PostgreSQL database on 127.0.0.1:5432, dropped at the end). ``--agents`` enrolled
   agents (``bench.fixtures``: real certificates) in load processes of ``--per-process`` each
   (``bench.fleet_agents``: real TLS, WebSocket, ``hello``, a WebSocket Ping every
   ``--interval`` s, the agent's own backoff and TLS resumption). Reported: RSS per agent summed
   over all broker processes (sum after − sum before the first agent) and CPU per 10,000 agents
   over ``--window`` s of heartbeats only.
2. ``kill -9`` of the broker process holding the count nearest ``agents / brokers``; its agents
   reconnect to the others (the kernel spreads new connections over the live listeners). Reported:
   seconds until every agent is connected again, connects per second (mean and peak over 0.5 s),
   failed attempts, agents that gave up, handshakes that offered a TLS session and how many were
   resumed, and connects per CPU-second of the surviving processes.
3. The same agents against ``--brokers`` × the bare websockets echo server on one port
   (``bench.reuse_echo``): RSS per agent and CPU at the same count, for the ratio. Then full TLS
   handshakes per CPU-second of the bare asyncio TLS server (``bench.tls_handshakes``, one
   process), beside the storm's figure.

Bounded: every load process ends after ``--max-minutes``; each phase has a deadline and the run
stops at ``--max-minutes`` of wall time, reporting what it measured. Prints a table and one JSON
line (also written to ``--json`` if given). Small scale for development::

    python -m bench.cluster_idle --agents 3000 --brokers 3 --per-process 1000

The issue-15 run (docs/PERFORMANCE.md; each load process connects from its own 127.0.0.N, since
one source address reaches one port from at most 28,232 ephemeral ports), ≤ 20 minutes, both
cores busy; enrol once first with ``--setup-only`` (about 8 minutes for 100,000)::

    python -m bench.cluster_idle --agents 100000 --brokers 7 --per-process 5000 \\
        --fixtures /tmp/bench-fx --json bench/results/cluster-idle.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures, kernel_net
from bench.cluster_fixtures import create_postgres, postgres_database
from bench.cluster_phases import Cluster, Fleet, idle_phase, storm_phase
from bench.common import machine_info, raise_nofile
from bench.tls_handshakes import handshake_baseline
from broker.tuning import DEFAULT_TLS_READ_BUFFER

Log = Callable[[str], None]


def _reuse(data_dir: Path, n: int) -> fixtures.Fixture | None:
    """The agents a previous ``--fixtures`` run enrolled in ``data_dir``, if there are enough."""
    path = data_dir / "bench-manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if len(manifest["agents"]) < n:
        return None
    # A process killed in the last run never wrote its agents offline: start from "all offline".
    with contextlib.closing(sqlite3.connect(data_dir / "broker.sqlite3", timeout=30)) as db, db:
        db.execute("UPDATE presence SET online = 0 WHERE online = 1")
    return fixtures.Fixture(
        data_dir=data_dir,
        ca_path=manifest["ca"],
        ca_fingerprint=manifest["ca_fingerprint"],
        agents=[fixtures.Agent(*a) for a in manifest["agents"]],
        operator_token=manifest["operator_token"],
        setup_seconds=0.0,
    )


@contextmanager
def _database(kind: str, data_dir: Path, n: int, log: Log) -> Iterator[tuple[fixtures.Fixture, str | None]]:
    if kind == "sqlite":
        fx = _reuse(data_dir, n)
        if fx is not None:
            log(f"reusing the {len(fx.agents):,} agents enrolled in {data_dir}")
            yield fx, None
            return
        log(f"enrolling {n:,} agents in SQLite …")
        yield fixtures.create(data_dir, n), None
        return
    with postgres_database() as url:
        log(f"enrolling {n:,} agents in PostgreSQL ({url.rsplit('/', 1)[1]}) …")
        yield create_postgres(data_dir, url, n), url


def run(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    started = time.time()
    deadline = time.monotonic() + float(args.max_minutes) * 60
    result: dict[str, Any] = {
        "bench": "cluster_idle",
        "started_at": started,
        "machine": machine_info(),
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
        "agents": args.agents,
        "brokers": args.brokers,
        "database": args.database,
        "interval": args.interval,
        "per_process": args.per_process,
    }
    keep = args.fixtures is not None and args.database == "sqlite"
    tmp = args.fixtures if keep else Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            fx, url = stack.enter_context(_database(args.database, tmp, args.agents, log))
            result["setup_seconds"] = round(fx.setup_seconds, 1)
            if url is not None:
                result["database_name"] = url.rsplit("/", 1)[1]
            log(f"  {args.agents:,} agents enrolled in {fx.setup_seconds:.0f} s")
            manifest = tmp / "bench-manifest.json"
            if fx.setup_seconds > 0:
                manifest = fx.write_manifest()
            if args.setup_only:
                return result

            def left() -> float:
                return deadline - time.monotonic()

            backlog = stack.enter_context(kernel_net.loopback_backlog(args.netdev_backlog))
            result["netdev_max_backlog"] = backlog
            log(f"  loopback backlog (net.core.netdev_max_backlog): {backlog}")
            kernel0 = kernel_net.counters()
            brokers_at = Cluster("broker", args.brokers, tmp, database=url, log=log)
            brokers_at.tls_read_buffer = args.tls_read_buffer
            result["tls_read_buffer"] = args.tls_read_buffer
            brokers_at.serve_args = ["--tls-ticket-period", str(args.tls_ticket_period)]
            result["tls_ticket_period"] = args.tls_ticket_period
            with brokers_at as brokers:
                fleet = Fleet(brokers, manifest, fx.ca_path, args, protocol="broker")
                try:
                    reserve = 120 + (0 if args.no_storm else args.storm_reserve)
                    reserve += 0 if args.no_echo else args.echo_reserve
                    result["broker"] = idle_phase(
                        brokers, fleet, args, left, log, n=args.agents, reserve=reserve
                    )
                    if not args.no_storm and result["broker"]["connected"] > 0 and left() > 30:
                        result["storm"] = storm_phase(brokers, fleet, args, left, log)
                finally:
                    fleet.stop()
            result["kernel_during_brokers"] = kernel_net.delta(kernel0, kernel_net.counters())
            log(f"  kernel during the broker phases: {result['kernel_during_brokers']}")
            if not args.no_echo and left() > 60:
                with Cluster("echo", args.brokers, tmp, database=None, log=log) as echoes:
                    fleet = Fleet(echoes, manifest, fx.ca_path, args, protocol="echo")
                    try:
                        # the same count as the brokers held, for the ratio
                        n = result["broker"]["connected"] if "broker" in result else args.agents
                        result["echo"] = idle_phase(echoes, fleet, args, left, log, n=n, reserve=90)
                    finally:
                        fleet.stop()
            if left() > 20:
                result["tls_bare"] = handshake_baseline(
                    tmp, fx.ca_path, manifest, args.handshake_seconds, log
                )
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.time() - started, 1)
    result["load_average_at_end"] = [round(x, 2) for x in psutil.getloadavg()]
    return result


def _table(r: dict[str, Any]) -> str:
    lines = [
        "| server | agents | processes | RSS MiB (sum) | KiB/agent | × echo | CPU % (heartbeats) "
        "| % core per 10k | × echo | no heartbeat: CPU % | heartbeats/s | connects/s (ramp) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    echo = r.get("echo", {})
    for name in ("broker", "echo"):
        row = r.get(name)
        if not row:
            continue
        kib = f"{row['kib_per_agent'] / echo['kib_per_agent']:.2f}×" if name == "broker" and echo else "-"
        cpu = (
            f"{row['cpu_pct'] / echo['cpu_pct']:.2f}×"
            if name == "broker" and echo and echo["cpu_pct"]
            else "-"
        )
        lines.append(
            f"| {name} | {row['connected']:,} | {r['brokers']} | {row['rss_mib']:,.0f} | "
            f"{row['kib_per_agent']:.1f} | {kib} | {row['cpu_pct']:.2f} | "
            f"{row['cpu_pct_per_10k']:.2f} | {cpu} | {row['floor_cpu_pct']:.2f} | "
            f"{row['heartbeats_per_s']:.0f} | {row['connects_per_s']:.0f} |"
        )
    storm = r.get("storm")
    if storm:
        bare = r.get("tls_bare", {}).get("per_core")
        ratio = f" ({storm['connects_per_cpu_s'] / bare:.2f}× bare TLS {bare:.0f})" if bare else ""
        lines += [
            "",
            f"kill -9 of {storm['killed_node']} holding {storm['dropped']:,} agents: all back in "
            f"{storm['all_back_s']} s (99 %: {storm['back_99_s']} s), none gave up: {storm['gave_up'] == 0}; "
            f"connects/s mean {storm['connects_per_s']:.0f}, peak {storm['peak_connects_per_s']:.0f}; "
            f"failed attempts {storm['failed']:,}; TLS session offered {storm['offered']:,}, resumed "
            f"{storm['resumed']:,}; connects per CPU-second of the survivors "
            f"{storm['connects_per_cpu_s']:.0f}{ratio}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_idle",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument(
        "--brokers",
        type=int,
        default=7,
        help="broker (and echo) processes on one port (7: room for one to fail)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--per-process", type=int, default=5000, help="agents per load process")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between an agent's Pings")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--max-settle", type=float, default=240.0, help="seconds to wait for the writes behind the connects"
    )
    parser.add_argument(
        "--ramp-concurrency", type=int, default=32, help="attempts in flight per load process"
    )
    parser.add_argument("--storm-deadline", type=float, default=180.0)
    parser.add_argument(
        "--storm-concurrency",
        type=int,
        default=64,
        help="reconnect attempts in flight per load process in the storm (each agent's timeout starts with "
        "its attempt, as if it had its own CPU)",
    )
    parser.add_argument(
        "--storm-reserve", type=float, default=240.0, help="seconds of the run kept for the storm"
    )
    parser.add_argument(
        "--echo-reserve", type=float, default=300.0, help="seconds of the run kept for the echo baseline"
    )
    parser.add_argument("--handshake-seconds", type=float, default=5.0)
    parser.add_argument(
        "--netdev-backlog",
        type=int,
        default=100_000,
        help="raise net.core.netdev_max_backlog to this for the run when root (0: leave it)",
    )
    parser.add_argument(
        "--tls-read-buffer",
        type=int,
        default=DEFAULT_TLS_READ_BUFFER,
        help="bytes of TLS read buffer per idle connection of each broker (serve --tls-read-buffer)",
    )
    parser.add_argument(
        "--tls-ticket-period",
        type=float,
        default=86_400.0,
        help="serve --tls-ticket-period (0: each broker its own ticket keys, no resumption after the kill)",
    )
    parser.add_argument("--no-storm", action="store_true")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="python",
        choices=("python", "native"),
        default=None,
        help="profile one broker during the idle window and the storm: py-spy (python, the default) "
        "or perf record with C stacks (native)",
    )
    parser.add_argument("--no-echo", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="the whole run, wall time")
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=None,
        help="SQLite only: data dir to keep the enrolled agents in, and to reuse them from on the next run",
    )
    parser.add_argument("--setup-only", action="store_true", help="enroll (--fixtures) and stop")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    raise_nofile()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run(args, log)
    print(_table(result))
    text = json.dumps(result, default=str)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
