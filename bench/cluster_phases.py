"""The processes and phases of ``bench.cluster_idle``: servers on one port, load processes, the
idle measurement, the kill -9 storm, and the bare TLS handshake baseline."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from bench.cluster_spy import Spy
from bench.common import Child, free_port
from bench.harness import spread
from broker import tuning

Log = Callable[[str], None]
KEYS = ("connected", "connects", "attempts", "failed", "gave_up", "drops", "pings", "offered", "resumed")
TUNED = tuning.DEFAULT_TLS_READ_BUFFER
PER = 10_000
MEMORY_FLOOR = 2 * 2**30
"""Stop the ramp when the machine has less memory than this available (other work runs here)."""


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _port_inodes(port: int) -> set[str]:
    """Inodes of the established TCP sockets whose local port is ``port`` (from /proc/net/tcp)."""
    suffix = f":{port:04X}"
    inodes: set[str] = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1].endswith(suffix) and fields[3] != "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _held(pid: int, inodes: set[str]) -> int:
    """How many of ``inodes`` the process holds open."""
    count = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


class Cluster:
    """``n`` broker processes (``serve --reuse-port``) or bare echo servers on one port."""

    def __init__(self, kind: str, n: int, data_dir: Path, *, database: str | None, log: Log) -> None:
        self.kind = kind
        self.tls_read_buffer = TUNED  # the brokers' serve --tls-read-buffer (set before entering)
        self.serve_args: list[str] = []  # more ``serve`` options (set before entering)
        self.n = n
        self.data_dir = data_dir
        self.database = database
        self.log = log
        self.port = free_port()
        self.children: list[Child] = []
        self.nodes: list[str] = []
        self.killed: set[int] = set()

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def _args(self, i: int) -> list[str]:
        if self.kind == "echo":
            return ["-m", "bench.reuse_echo", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        database = ["--database", self.database] if self.database else []
        return [
            "-m",
            "bench.launcher",
            "--tls-read-buffer",
            str(self.tls_read_buffer),
            "--",
            "--data-dir",
            str(self.data_dir),
            *database,
            "serve",
            "--port",
            str(self.port),
            "--reuse-port",
            "--node-id",
            f"n{i + 1}",
            *self.serve_args,
            *("--hours", "00:00-00:00", "--log-level", "WARNING"),
        ]

    def _wait(self, child: Child) -> None:
        if self.kind == "echo":
            child.wait_for("listening", timeout=60)
        else:
            child.wait_text("broker listening", timeout=120)

    def __enter__(self) -> Cluster:
        t0 = time.monotonic()
        first = Child(self._args(0), name=f"{self.kind}-1")  # the first one migrates the database
        self.children.append(first)
        self.nodes.append("n1")
        self._wait(first)
        for i in range(1, self.n):
            self.children.append(Child(self._args(i), name=f"{self.kind}-{i + 1}"))
            self.nodes.append(f"n{i + 1}")
        for child in self.children[1:]:
            self._wait(child)
        time.sleep(1.0)
        self.log(f"  {self.n} × {self.kind} on port {self.port} in {time.monotonic() - t0:.1f} s")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for i, child in enumerate(self.children):
            t0, held = time.monotonic(), child.proc.poll() is None
            child.stop(120)  # SIGTERM: the graceful stop a rolling restart relies on
            if held:
                self.log(f"  {self.kind} {self.nodes[i]} stopped in {time.monotonic() - t0:.1f} s")

    def pids(self, *, alive: bool = True) -> list[int]:
        return [c.pid for i, c in enumerate(self.children) if not (alive and i in self.killed)]

    def rss(self) -> int:
        return _rss(self.pids())

    def cpu(self) -> float:
        return _cpu(self.pids())

    def connections(self) -> list[int]:
        """Client connections each process holds on the shared port, 0 for a killed one."""
        inodes = _port_inodes(self.port)
        return [0 if i in self.killed else _held(c.pid, inodes) for i, c in enumerate(self.children)]

    def online(self) -> int:
        """Agents the database says are online (brokers; for echo servers: a large number)."""
        if self.kind != "broker":
            return 1 << 62
        query = "SELECT count(*) FROM presence WHERE online = 1"
        if self.database:
            import psycopg

            with psycopg.connect(self.database, connect_timeout=5) as conn:
                row = conn.execute(query).fetchone()
        else:
            uri = f"file:{self.data_dir / 'broker.sqlite3'}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                row = db.execute(query).fetchone()
        return int(row[0]) if row else 0

    def error_lines(self) -> int:
        """Lines of the processes' recent stderr (the last 200 each) that report an error."""
        return sum(1 for c in self.children for line in c.errors if "ERROR" in line or "Traceback" in line)

    def error_samples(self, n: int = 8) -> list[str]:
        """The distinct warning/error messages of those lines (timestamps cut), at most ``n``."""
        lines = (line for c in self.children for line in c.errors)
        bad = (line.split(" ", 2)[-1][:200] for line in lines if "ERROR" in line or "WARNING" in line)
        return list(dict.fromkeys(bad))[:n]

    def kill(self, i: int) -> None:
        os.kill(self.children[i].pid, signal.SIGKILL)
        self.killed.add(i)


class Fleet:
    """Load processes (``bench.fleet_agents``) of ``--per-process`` agents each."""

    def __init__(
        self, cluster: Cluster, manifest: Path, ca: str, args: argparse.Namespace, *, protocol: str
    ) -> None:
        self.children: list[Child] = []
        self.counts: list[int] = []
        self.memory_guard = False
        self.time_cut = False
        for start in range(0, args.agents, args.per_process):
            count = min(args.per_process, args.agents - start)
            self.counts.append(count)
            self.children.append(
                Child(
                    [
                        "-m",
                        "bench.fleet_agents",
                        "--url",
                        cluster.url,
                        "--ca",
                        ca,
                        "--manifest",
                        str(manifest),
                        "--protocol",
                        protocol,
                        "--start",
                        str(start),
                        "--count",
                        str(count),
                        "--concurrency",
                        str(args.ramp_concurrency),
                        "--interval",
                        str(args.interval),
                        "--source",  # every agent its own loopback address, as real agents
                        "each",
                        "--max-seconds",
                        str(args.max_minutes * 60),
                    ],
                    name=f"agents-{start}",
                )
            )
        for child in self.children:
            child.wait_for("status", timeout=120)

    def status(self) -> dict[str, int]:
        total = dict.fromkeys(KEYS, 0)
        for child in self.children:
            last = child.last("status") or {}
            for key in KEYS:
                total[key] += int(last.get(key, 0))
        return total

    def failed_kinds(self) -> dict[str, int]:
        """Failed attempts by exception class, summed over the load processes."""
        kinds: dict[str, int] = {}
        for child in self.children:
            for kind, count in ((child.last("status") or {}).get("failed_kinds") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + int(count)
        return kinds

    def send_all(self, command: dict[str, Any]) -> None:
        for child in self.children:
            child.send(command)

    def connect_all(self, n: int, *, timeout: float, log: Log) -> float:
        """Start every agent; wait until ``n`` are connected, ``timeout`` passes or the machine runs
        short of memory (then the agents not yet started are not started: the run goes on with
        the ones connected, and the report says so)."""
        t0 = time.monotonic()
        for child, count in zip(self.children, spread(n, self.counts), strict=True):
            child.send({"cmd": "connect", "n": count})
        while self.status()["connected"] < n:
            time.sleep(0.5)
            if psutil.virtual_memory().available < MEMORY_FLOOR:
                log(f"  memory guard: under {MEMORY_FLOOR / 2**30:.0f} GiB available, ramp stopped")
                self.memory_guard = True
                self.send_all({"cmd": "hold"})
                break
            if time.monotonic() - t0 >= timeout:
                log(f"  ramp stopped after {timeout:.0f} s (the run's time budget)")
                self.time_cut = True
                self.send_all({"cmd": "hold"})
                break
        return time.monotonic() - t0

    def rss(self) -> int:
        return _rss([c.pid for c in self.children])

    def stop(self) -> None:
        for child in self.children:
            try:
                child.send({"cmd": "quit"})
            except OSError:
                continue
        for child in self.children:
            child.stop(30)


def _settle(cluster: Cluster, connected: int, *, limit: float, sample: float = 2.0) -> float:
    """Wait until the work queued behind the connects has drained: every connected agent's
    presence row says online (the brokers write presence and audit in the background, in order)
    and the servers' CPU stops falling; at most ``limit`` seconds. The seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and cluster.online() < connected:
        time.sleep(sample)
    previous = float("inf")
    while time.monotonic() - t0 < limit:
        c0, w0 = cluster.cpu(), time.monotonic()
        time.sleep(sample)
        now = (cluster.cpu() - c0) / (time.monotonic() - w0)
        if now >= previous * 0.9 - 0.005:
            break
        previous = now
    return time.monotonic() - t0


def _floor(cluster: Cluster, fleet: Fleet, args: argparse.Namespace, left: Callable[[], float]) -> float:
    """The servers' CPU with the same connections and no heartbeat at all (their timers and polls),
    over half the window; the heartbeat is switched back on after."""
    fleet.send_all({"cmd": "heartbeat", "mode": "none", "interval": 0})
    time.sleep(1.0)
    c0, t0 = cluster.cpu(), time.monotonic()
    time.sleep(min(args.window / 2, max(1.0, left() - 60)))
    floor = (cluster.cpu() - c0) / (time.monotonic() - t0)
    fleet.send_all({"cmd": "heartbeat", "mode": "frame", "interval": args.interval})
    return floor


def idle_phase(
    cluster: Cluster,
    fleet: Fleet,
    args: argparse.Namespace,
    left: Callable[[], float],
    log: Log,
    *,
    n: int,
    reserve: float,
) -> dict[str, Any]:
    """Connect ``n`` agents, keeping ``reserve`` seconds of the run for what follows (a ramp cut
    short goes on with the agents connected); RSS per agent over all processes; CPU over a window
    of heartbeats, then without."""
    time.sleep(1.0)
    rss0 = cluster.rss()
    cpu0, t0 = cluster.cpu(), time.monotonic()
    seconds = fleet.connect_all(n, timeout=max(30.0, left() - reserve), log=log)
    available = psutil.virtual_memory().available
    connect_cpu = (cluster.cpu() - cpu0) / max(1e-9, time.monotonic() - t0)
    status = fleet.status()
    log(f"  {cluster.kind}: {status['connected']:,} of {n:,} connected in {seconds:.1f} s")
    fleet.send_all({"cmd": "heartbeat", "mode": "frame", "interval": args.interval})
    settle = _settle(cluster, status["connected"], limit=min(args.max_settle, max(2.0, left() - 90)))
    log(f"  {cluster.kind}: CPU settled after {settle:.0f} s (the writes behind the connects drained)")
    rss = cluster.rss()
    floor_before = _floor(cluster, fleet, args, left)  # a drain still going on shows here, not as heartbeats
    spy = Spy(getattr(args, "profile", None) if cluster.kind == "broker" else None)
    counts = cluster.connections()
    spy.start(cluster.children[counts.index(max(counts))].pid, "idle", seconds=args.window)
    pings0 = fleet.status()["pings"]
    cpu0, t0 = cluster.cpu(), time.monotonic()
    samples: list[float] = []
    end = t0 + min(args.window, max(1.0, left() - 60))
    while time.monotonic() < end:
        c, w = cluster.cpu(), time.monotonic()
        time.sleep(min(5.0, max(0.1, end - w)))
        samples.append(round((cluster.cpu() - c) / (time.monotonic() - w) * 100, 1))
    wall = time.monotonic() - t0
    cpu = (cluster.cpu() - cpu0) / wall
    profile = spy.finish()
    after = fleet.status()
    connected = after["connected"]
    floor = _floor(cluster, fleet, args, left)
    log(
        f"  {cluster.kind}: CPU {cpu * 100:.1f} % with heartbeats (5 s samples {samples}); "
        f"without: {floor_before * 100:.1f} % before, {floor * 100:.1f} % after"
    )
    row = {
        "connected": connected,
        "rss_mib": round(rss / 2**20, 1),
        "rss_base_mib": round(rss0 / 2**20, 1),
        "kib_per_agent": round((rss - rss0) / max(1, connected) / 1024, 2),
        "cpu_pct": round(cpu * 100, 2),
        "cpu_pct_per_10k": round(cpu * 100 * PER / max(1, connected), 3),
        "heartbeats_per_s": round((after["pings"] - pings0) / wall, 1),
        "connect_seconds": round(seconds, 1),
        "connects_per_s": round(status["connected"] / seconds, 1) if seconds > 0 else 0.0,
        "connect_cpu_pct": round(connect_cpu * 100, 1),
        "settle_s": round(settle, 1),
        "cpu_pct_samples": samples,
        "floor_cpu_pct": round(floor * 100, 2),
        "floor_before_cpu_pct": round(floor_before * 100, 2),
        "profile": profile,
        "heartbeat_cpu_pct_per_10k": round(max(0.0, cpu - floor) * 100 * PER / max(1, connected), 3),
        "memory_guard": fleet.memory_guard,
        "ramp_cut_by_time": fleet.time_cut,
        "available_gib_after_ramp": round(available / 2**30, 1),
        "failed": after["failed"],
        "drops": after["drops"],
        "per_process": cluster.connections(),
        "loadgen_rss_mib": round(fleet.rss() / 2**20, 1),
        "error_lines": cluster.error_lines(),
        "error_samples": cluster.error_samples(),
    }
    log(
        f"  {cluster.kind}: {row['kib_per_agent']} KiB/agent ({row['rss_mib']} MiB over {cluster.n}), "
        f"CPU {row['cpu_pct']} % = {row['cpu_pct_per_10k']} % per 10k at {row['heartbeats_per_s']} Pings/s "
        f"(no heartbeat: {row['floor_cpu_pct']} %); "
        f"per process {row['per_process']}"
    )
    return row


def storm_phase(
    cluster: Cluster, fleet: Fleet, args: argparse.Namespace, left: Callable[[], float], log: Log
) -> dict[str, Any]:
    """kill -9 the process holding about 1/n of the agents; time until all are connected again."""
    counts = cluster.connections()
    share = args.agents / cluster.n
    victim = min(range(cluster.n), key=lambda i: abs(counts[i] - share))
    # Attempts in flight per load process. Real agents each have a CPU of their own; here hundreds of
    # them share one process on 2 shared cores, and started all at once their client handshakes would
    # finish together after their own 15 s timeout (the load side's collapse, not the brokers').
    fleet.send_all({"cmd": "concurrency", "n": args.storm_concurrency})
    time.sleep(1.0)
    before = fleet.status()
    survivors = [c.pid for i, c in enumerate(cluster.children) if i != victim and i not in cluster.killed]
    cpu0 = _cpu(survivors)
    spy = Spy(getattr(args, "profile", None))
    alive = [i for i in range(cluster.n) if i != victim and i not in cluster.killed]
    busiest = max(alive, key=counts.__getitem__)
    spy.start(cluster.children[busiest].pid, "storm", seconds=20)
    t_kill = time.monotonic()
    cluster.kill(victim)
    deadline = t_kill + min(args.storm_deadline, max(10.0, left() - 30))
    samples: list[tuple[float, int, int]] = []
    back_at: float | None = None
    expected = counts[victim]
    peak = 0.0
    last_t, last_connects = t_kill, before["connects"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = time.monotonic()
        s = fleet.status()
        rate = (s["connects"] - last_connects) / (now - last_t)
        peak = max(peak, rate)
        last_t, last_connects = now, s["connects"]
        samples.append((round(now - t_kill, 2), s["connected"], s["connects"] - before["connects"]))
        dropped = s["drops"] - before["drops"]
        if (
            dropped >= 0.9 * expected
            and s["connected"] >= before["connected"]
            and s["connects"] - before["connects"] >= dropped
        ):
            back_at = now
            break
    cpu = _cpu(survivors) - cpu0
    profile = spy.finish()
    after = fleet.status()
    reconnects = after["connects"] - before["connects"]
    dropped = after["drops"] - before["drops"]

    def reached(part: float) -> float | None:
        for t, _connected, back in samples:
            if back >= part * dropped:
                return t
        return None

    wall = (back_at or time.monotonic()) - t_kill
    row = {
        "killed_node": cluster.nodes[victim],
        "counts_before": counts,
        "dropped": dropped,
        "reconnected": reconnects,
        "all_back_s": round(back_at - t_kill, 1) if back_at is not None else None,
        "back_50_s": reached(0.5),
        "back_99_s": reached(0.99),
        "connects_per_s": round(reconnects / wall, 1) if wall > 0 else 0.0,
        "peak_connects_per_s": round(peak, 1),
        "failed": after["failed"] - before["failed"],
        "failed_kinds": fleet.failed_kinds(),
        "profile": profile,
        "gave_up": after["gave_up"] - before["gave_up"],
        "offered": after["offered"] - before["offered"],
        "resumed": after["resumed"] - before["resumed"],
        "survivors_cpu_s": round(cpu, 1),
        "survivors_cpu_pct": round(cpu / wall * 100, 1) if wall > 0 else 0.0,
        "connects_per_cpu_s": round(reconnects / cpu, 1) if cpu > 0 else 0.0,
        "counts_after": cluster.connections(),
        "error_lines": cluster.error_lines(),
        "error_samples": cluster.error_samples(),
        "samples": samples[::2],
    }
    log(
        f"  storm: killed {row['killed_node']} ({expected:,} agents); {reconnects:,} back in "
        f"{row['all_back_s']} s; peak {peak:.0f}/s; failed {row['failed']:,}; gave up {row['gave_up']}; "
        f"resumed {row['resumed']} of {row['offered']} offered; "
        f"{row['connects_per_cpu_s']} connects per CPU-s"
    )
    return row
