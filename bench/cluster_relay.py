"""Relay across broker processes beside the relay in one process (issue 15, docs/cluster.md §6).

``python -m bench.cluster_relay [--sessions 50] [--size 65536] [--rounds 2]``

Two ``broker serve`` processes (through ``bench.launcher``) on one fresh PostgreSQL database
(127.0.0.1:5432, a random name, dropped at the end), the NATS server on 127.0.0.1:4222 with a
subject prefix of their own, each with ``--cluster-listen`` on 127.0.0.1. ``2 × --sessions``
enrolled agents (``bench.cluster_fixtures``: real certificates) and one logged-in operator.
Two load processes of the same load generator (``python -m bench.loadgen relay``, each session
an agent link and an operator link, claimed by id with a signed consent receipt):

- **same process**: agent and operator both on process A (the baseline);
- **cross process**: the operator on A, the agent on B (``--agent-url``): the operator's
  messages go A → B over the node link, the screen frames B → A.

Every round runs, for each configuration in turn (the other's sessions stay connected and idle):
a throughput phase (``--seconds``, updates of ``--size`` bytes as fast as a window of about
1 MiB in flight per session allows; a frame the relay drops counts as lost at the next keyframe
request) and a paced phase (``--latency-seconds``, ``--rate`` updates/s of ``--latency-size``
bytes and ``--input-rate`` input events/s per session; latency of every update and input, in the
load process's own clock). Reported: delivered MB/s of each and the ratio cross / same (goal
≥ 0.7), update and input latency p50/p99 of each and the p99 cross − same (goal < 5 ms), the CPU
of each broker process during each phase, the load average. The medians over rounds are the
figures. Nothing is asserted: the numbers are printed as a table and one JSON line (also written
to ``--json``). Bounded: every load process ends after ``--max-minutes``; everything talks only to
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

from bench import fixtures
from bench.cluster_fixtures import create_postgres, postgres_database
from bench.common import Child, KiB, Usage, free_port, machine_info, raise_nofile
from bench.profiling import summarize_profile

Log = Callable[[str], None]
NATS_URL = "nats://127.0.0.1:4222"
CONFIGS = ("same", "cross")
GOAL_RATIO = 0.7
GOAL_ADDED_P99_MS = 5.0


def _broker(data_dir: Path, database: str, prefix: str, node: str) -> tuple[Child, str]:
    port = free_port()
    child = Child(
        [
            "-m",
            "bench.launcher",
            "--",
            "--data-dir",
            str(data_dir),
            "--database",
            database,
            "serve",
            "--port",
            str(port),
            "--node-id",
            node,
            "--nats",
            NATS_URL,
            "--nats-prefix",
            prefix,
            "--cluster-listen",
            f"127.0.0.1:{free_port()}",
            "--hours",
            "00:00-00:00",
            "--log-level",
            "WARNING",
        ],
        name=f"broker-{node}",
    )
    return child, f"wss://127.0.0.1:{port}"


@contextmanager
def _cluster(data_dir: Path, database: str, log: Log) -> Iterator[list[tuple[Child, str]]]:
    """Brokers n1 (A) and n2 (B), started one after the other (the first migrates the database)."""
    prefix = f"bench{secrets.token_hex(4)}.broker"
    brokers: list[tuple[Child, str]] = []
    try:
        for node in ("n1", "n2"):
            brokers.append(_broker(data_dir, database, prefix, node))
            brokers[-1][0].wait_text("broker listening", timeout=120)
        log(f"  brokers A {brokers[0][1]} and B {brokers[1][1]}, NATS prefix {prefix}")
        yield brokers
    finally:
        for child, _ in brokers:
            child.stop(60)


def _load(
    url: str,
    agent_url: str,
    ca: str,
    manifest: Path,
    sessions: int,
    first: int,
    max_seconds: float,
    name: str,
) -> Child:
    return Child(
        [
            *("-m", "bench.loadgen", "relay", "--target", "broker", "--url", url, "--agent-url", agent_url),
            *("--ca", ca, "--manifest", str(manifest), "--sessions", str(sessions), "--first", str(first)),
            *("--max-seconds", str(max_seconds)),
        ],
        name=name,
    )


def _quit(child: Child) -> None:
    with suppress(OSError):
        child.send({"cmd": "quit"})
    child.stop(30)


def _spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return None
    return subprocess.Popen(
        [
            *(str(spy), "record", "--nonblocking", "--rate", "100", "--format", "raw", "-o", str(out)),
            *("-p", str(pid), "-d", str(math.ceil(seconds))),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _phase(
    child: Child,
    brokers: list[tuple[Child, str]],
    command: dict[str, Any],
    timeout: float,
    profile: Path | None = None,
) -> tuple[dict[str, Any], list[float]]:
    """One command to one load process; its result and the CPU fraction of each broker and of the
    load process meanwhile. ``profile``: py-spy on all three for the phase, summaries written there."""
    pids = [b.pid for b, _ in brokers] + [child.pid]
    usage = [Usage(pid) for pid in pids]
    mark = child.mark()
    child.send(command)
    spies: list[tuple[subprocess.Popen[bytes] | None, Path]] = []
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        for name, pid in zip(("broker-A", "broker-B", "loadgen"), pids, strict=True):
            raw = profile / f"{name}.txt"
            spies.append((_spy(pid, raw, float(command["seconds"]) - 0.5), raw))
    result = child.wait_for("result", timeout=timeout, after=mark)
    cpu = [u.cpu_fraction() for u in usage]
    for proc, raw in spies:
        if proc is not None:
            proc.wait(60)
        if raw.exists():
            summary = summarize_profile(raw.read_text(), top=25)
            raw.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return result, cpu


def _throughput_row(result: dict[str, Any], cpu: list[float]) -> dict[str, Any]:
    elapsed = float(result["elapsed"])
    return {
        "mb_per_s": round(result["bytes"] / elapsed / 1e6, 1),
        "messages_per_s": round(result["messages"] / elapsed),
        "sent": result["sent"],
        "delivered": result["messages"],
        "refresh_requests": result["refresh_requests"],
        "cpu_pct": [round(c * 100) for c in cpu[:2]],
        "loadgen_cpu_pct": round(cpu[2] * 100),
    }


def _latency_row(result: dict[str, Any], cpu: list[float], target: int) -> dict[str, Any]:
    def ms(d: dict[str, Any]) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in d.items()}

    return {
        "update": ms(result["update_latency"]),
        "input": ms(result["input_latency"]),
        "delivered": result["messages"],
        "offered": result["sent"],
        "target": target,
        "cpu_pct": [round(c * 100) for c in cpu[:2]],
        "loadgen_cpu_pct": round(cpu[2] * 100),
    }


def _round(
    args: argparse.Namespace,
    loads: dict[str, Child],
    brokers: list[tuple[Child, str]],
    log: Log,
    *,
    profile: Path | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"throughput": {}, "latency": {}}
    for name in CONFIGS:
        result, cpu = _phase(
            loads[name],
            brokers,
            {"cmd": "throughput", "size": args.size, "seconds": args.seconds, "max_messages": 10**7},
            timeout=args.seconds + 60,
            profile=profile / name if profile is not None else None,
        )
        row = out["throughput"][name] = _throughput_row(result, cpu)
        log(
            f"  {name:<5} throughput: {row['mb_per_s']} MB/s, {row['messages_per_s']} msg/s, "
            f"{row['delivered']} of {row['sent']} delivered, CPU A/B {row['cpu_pct']} %, "
            f"load process {row['loadgen_cpu_pct']} %"
        )
    for name in CONFIGS:
        command = {
            "cmd": "paced",
            "size": args.latency_size,
            "seconds": args.latency_seconds,
            "rate": args.rate,
            "input_rate": args.input_rate,
        }
        result, cpu = _phase(loads[name], brokers, command, timeout=args.latency_seconds + 60)
        target = int(args.sessions * args.rate * args.latency_seconds)
        row = out["latency"][name] = _latency_row(result, cpu, target)
        log(
            f"  {name:<5} paced: update p50 {row['update']['p50_ms']} p99 {row['update']['p99_ms']} ms, "
            f"input p50 {row['input']['p50_ms']} p99 {row['input']['p99_ms']} ms, CPU A/B {row['cpu_pct']} %"
        )
    return out


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds; the ratio and the added p99 from them."""

    def med(*path: str) -> float:
        values = []
        for r in rounds:
            value: Any = r
            for key in path:
                value = value[key]
            values.append(float(value))
        return round(statistics.median(values), 2)

    out: dict[str, Any] = {}
    for name in CONFIGS:
        out[name] = {
            "mb_per_s": med("throughput", name, "mb_per_s"),
            "update_p50_ms": med("latency", name, "update", "p50_ms"),
            "update_p99_ms": med("latency", name, "update", "p99_ms"),
            "input_p50_ms": med("latency", name, "input", "p50_ms"),
            "input_p99_ms": med("latency", name, "input", "p99_ms"),
            "cpu_pct_throughput": [
                statistics.median(r["throughput"][name]["cpu_pct"][i] for r in rounds) for i in (0, 1)
            ],
            "loadgen_cpu_pct_throughput": med("throughput", name, "loadgen_cpu_pct"),
            "cpu_pct_paced": [
                statistics.median(r["latency"][name]["cpu_pct"][i] for r in rounds) for i in (0, 1)
            ],
        }
    same, cross = out["same"], out["cross"]
    ratio = cross["mb_per_s"] / same["mb_per_s"] if same["mb_per_s"] else None
    out["throughput_ratio"] = round(ratio, 3) if ratio is not None else None
    out["per_round_ratio"] = [
        round(r["throughput"]["cross"]["mb_per_s"] / r["throughput"]["same"]["mb_per_s"], 3)
        for r in rounds
        if r["throughput"]["same"]["mb_per_s"]
    ]
    out["added_update_p99_ms"] = round(cross["update_p99_ms"] - same["update_p99_ms"], 2)
    out["added_input_p99_ms"] = round(cross["input_p99_ms"] - same["input_p99_ms"], 2)
    out["ratio_met"] = ratio is not None and ratio >= GOAL_RATIO
    out["added_p99_met"] = max(out["added_update_p99_ms"], out["added_input_p99_ms"]) < GOAL_ADDED_P99_MS
    return out


def run(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    started = time.time()
    result: dict[str, Any] = {
        "bench": "cluster_relay",
        "started_at": started,
        "machine": machine_info(),
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
        "sessions": args.sessions,
        "size": args.size,
        "latency_size": args.latency_size,
        "rate": args.rate,
        "input_rate": args.input_rate,
        "rounds": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    try:
        with ExitStack() as stack:
            url = stack.enter_context(postgres_database(prefix="bench_relay"))
            result["database_name"] = url.rsplit("/", 1)[1]
            fx = create_postgres(tmp, url, 2 * args.sessions)
            fx.operator_token = fixtures.operator_token(tmp, url)
            manifest = fx.write_manifest()
            log(f"  {2 * args.sessions} agents and an operator in {result['database_name']}")
            brokers = stack.enter_context(_cluster(tmp, url, log))
            (_, url_a), (_, url_b) = brokers
            loads: dict[str, Child] = {}
            for name, agent_url, first in (("same", url_a, 0), ("cross", url_b, args.sessions)):
                child = _load(
                    url_a, agent_url, fx.ca_path, manifest, args.sessions, first, args.max_minutes * 60, name
                )
                stack.callback(_quit, child)
                t0 = time.monotonic()
                child.wait_for("ready", timeout=120 + 2 * args.sessions)
                log(f"  {name}: {args.sessions} sessions active in {time.monotonic() - t0:.1f} s")
                loads[name] = child
            deadline = started + args.max_minutes * 60
            for n in range(args.rounds):
                per_round = 2 * (args.seconds + args.latency_seconds) + 30
                if n > 0 and time.time() + per_round > deadline:
                    log(f"  round {n + 1} skipped: the run's time budget")
                    break
                log(f"round {n + 1}")
                profile = args.profile if n == 0 else None
                result["rounds"].append(_round(args, loads, brokers, log, profile=profile))
            result["broker_error_lines"] = [
                sum(1 for line in b.errors if "ERROR" in line or "Traceback" in line) for b, _ in brokers
            ]
        result["summary"] = _summary(result["rounds"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.time() - started, 1)
    result["load_average_at_end"] = [round(x, 2) for x in psutil.getloadavg()]
    return result


def _pair(cpu: list[float]) -> str:
    return f"{cpu[0]:.0f} / {cpu[1]:.0f}"


def _table(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = [
        f"{r['sessions']} sessions; throughput: {r['size'] // KiB} KiB updates; paced: {r['rate']:g} × "
        f"{r['latency_size'] // KiB} KiB updates/s and {r['input_rate']:g} inputs/s per session; "
        f"medians of {len(r['rounds'])} round(s)",
        "",
        "| relay | MB/s | CPU % A / B | load process CPU % | update p50 / p99 ms | input p50 / p99 ms "
        "| CPU % A / B (paced) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("same", "same process (agent and operator on A)"),
        ("cross", "cross process (A ↔ B)"),
    ):
        row = s[name]
        lines.append(
            f"| {label} | {row['mb_per_s']:.0f} | {_pair(row['cpu_pct_throughput'])} "
            f"| {row['loadgen_cpu_pct_throughput']:.0f} "
            f"| {row['update_p50_ms']:.2f} / {row['update_p99_ms']:.2f} "
            f"| {row['input_p50_ms']:.2f} / {row['input_p99_ms']:.2f} | {_pair(row['cpu_pct_paced'])} |"
        )
    lines += [
        "",
        f"throughput cross / same: {s['throughput_ratio']}× (rounds: {s['per_round_ratio']}; goal ≥ "
        f"{GOAL_RATIO}×, met: {s['ratio_met']}); "
        f"added p99: updates {s['added_update_p99_ms']} ms, inputs {s['added_input_p99_ms']} ms "
        f"(goal < {GOAL_ADDED_P99_MS:g} ms, met: {s['added_p99_met']})",
        f"load average at start {r['load_average_at_start']}, at end {r['load_average_at_end']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_relay",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=50, help="sessions of each configuration")
    parser.add_argument("--size", type=int, default=64 * KiB, help="bytes per update, throughput phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput phase")
    parser.add_argument("--latency-size", type=int, default=20 * KiB, help="bytes per update, paced phase")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="paced phase")
    parser.add_argument("--rate", type=float, default=30.0, help="updates/s per session, paced phase")
    parser.add_argument("--input-rate", type=float, default=30.0, help="input events/s per session")
    parser.add_argument("--rounds", type=int, default=2, help="both configurations, in turn, this often")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="the whole run, wall time")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy (.venv) on both brokers and the load process in the first round's throughput "
        "phases: raw stacks and summaries in this directory",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    raise_nofile()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run(args, log)
    print(_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
