"""TLS handshakes per second per core: the broker's listener beside a bare asyncio TLS server, with
full handshakes and with TLS 1.3 session resumption (the agent's ``agent.tls_session``).

``python -m bench.tls_handshakes [--seconds 8] [--concurrency 8]``

After a broker restart every agent reconnects at once, and the storm is bound by TLS handshakes
(docs/PERFORMANCE.md). Here one load process (``client`` mode) opens TLS connections to
127.0.0.1 with a real agent certificate, ``--concurrency`` at a time, completes the handshake and
closes, for ``--seconds``; the server's CPU time is read from ``/proc`` over the same window.
Servers: the broker as shipped (``bench.launcher`` → ``broker serve``: the admission gate, then
asyncio's TLS protocol, then the lean WebSocket listener, which is torn down at the client's close)
and ``bare`` (this module: ``loop.create_server`` with a do-nothing protocol and the broker's own
certificate, client-certificate checking and cipher settings, ``wire.tls.harden_server_context``).
With ``--resume`` the client offers the session (ticket) of its first connection on every later
one, as the agent does after a reconnect. "Per core" = handshakes per second of server CPU time.
Bounded: every client stops after ``--seconds``; the whole run takes about 4 × (seconds + 5) s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.tls_session import SessionCache, enable_resumption
from bench import fixtures
from bench.common import Child, Usage, emit, free_port, machine_info, raise_nofile
from bench.harness import PLANS, Context, Server
from broker import tuning
from wire.tls import harden_server_context

TUNED = tuning.DEFAULT_TLS_READ_BUFFER


# -- the bare server ---------------------------------------------------------------------------------


class _Nothing(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


async def _bare(data_dir: Path, port: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(data_dir / "server.pem", data_dir / "server-key.pem")
    ctx.load_verify_locations(cafile=str(data_dir / "ca.pem"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    harden_server_context(ctx)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(_Nothing, "127.0.0.1", port, ssl=ctx, backlog=2048)
    emit({"event": "listening", "port": port})
    await stop.wait()
    server.close()


# -- the client --------------------------------------------------------------------------------------


async def _client(port: int, ca: str, pem: str, seconds: float, concurrency: int, resume: bool) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca)
    ctx.load_cert_chain(pem)
    cache = SessionCache()
    if resume:
        enable_resumption(ctx, cache)
    loop = asyncio.get_running_loop()
    done = failed = reused = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done, failed, reused
        try:
            transport, _ = await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"
            )
        except (OSError, ssl.SSLError):
            failed += 1
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if resume and cache.session is None:
            for _ in range(100):  # TLS 1.3: the ticket comes after the handshake
                await asyncio.sleep(0.01)
                cache.remember(ssl_object)
                if _has_session(cache):
                    break
        if ssl_object is not None and ssl_object.session_reused:
            reused += 1
        done += 1
        transport.close()

    async def worker() -> None:
        while time.monotonic() < deadline:
            await one()

    await one()  # the first (full) handshake, and the session to resume
    done = reused = 0
    emit({"event": "start"})
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    emit(
        {
            "event": "result",
            "handshakes": done,
            "reused": reused,
            "failed": failed,
            "seconds": time.monotonic() - t0,
        }
    )


def _has_session(cache: SessionCache) -> bool:
    return cache.session is not None


# -- the orchestration -------------------------------------------------------------------------------


def _measure(
    ctx: Context, server_pid: int, port: int, args: argparse.Namespace, resume: bool
) -> dict[str, Any]:
    manifest = json.loads(Path(ctx.manifest).read_text())
    pem = manifest["agents"][0][2]
    client = Child(
        [
            "-m",
            "bench.tls_handshakes",
            "client",
            "--port",
            str(port),
            "--ca",
            ctx.ca,
            "--pem",
            pem,
            "--seconds",
            str(args.seconds),
            "--concurrency",
            str(args.concurrency),
            *(["--resume"] if resume else []),
        ],
        name="tls-client",
    )
    try:
        client.wait_for("start", timeout=30)
        usage = Usage(server_pid)
        result = client.wait_for("result", timeout=args.seconds + 60)
        cpu = usage.cpu_fraction()
    finally:
        client.stop(10)
    rate = result["handshakes"] / result["seconds"]
    return {
        "handshakes_per_s": round(rate, 1),
        "server_cpu_pct": round(cpu * 100, 1),
        "per_core": round(rate / cpu, 1) if cpu > 0 else None,
        "reused": result["reused"],
        "handshakes": result["handshakes"],
        "failed": result["failed"],
    }


def handshake_baseline(
    data_dir: Path, ca: str, manifest: Path, seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Full TLS handshakes per CPU-second of the bare asyncio TLS server (``bench.tls_handshakes``)."""
    port = free_port()
    bare = Child(
        ["-m", "bench.tls_handshakes", "bare", "--data-dir", str(data_dir), "--port", str(port)],
        name="bare-tls",
    )
    try:
        bare.wait_for("listening", timeout=30)
        ctx = Context(
            plan=PLANS["quick"],
            data_dir=data_dir,
            manifest=manifest,
            ca=ca,
            fingerprint="",
            n_agents=1,
            log=log,
        )
        options = argparse.Namespace(seconds=seconds, concurrency=8)
        row = _measure(ctx, bare.pid, port, options, False)
    finally:
        bare.stop(10)
    log(f"  bare asyncio TLS: {row['per_core']} full handshakes per CPU-second")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_handshakes")
    sub = parser.add_subparsers(dest="mode")
    bare = sub.add_parser("bare")
    bare.add_argument("--data-dir", type=Path, required=True)
    bare.add_argument("--port", type=int, required=True)
    client = sub.add_parser("client")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--ca", required=True)
    client.add_argument("--pem", required=True)
    client.add_argument("--resume", action="store_true")
    for p in (parser, client):
        p.add_argument("--seconds", type=float, default=8.0)
        p.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    raise_nofile()
    if args.mode == "bare":
        asyncio.run(_bare(args.data_dir, args.port))
        return 0
    if args.mode == "client":
        asyncio.run(_client(args.port, args.ca, args.pem, args.seconds, args.concurrency, args.resume))
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.time()
    machine = machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    rows: list[dict[str, Any]] = []
    try:
        fx = fixtures.create(tmp, 2)
        ctx = Context(
            plan=PLANS["quick"],
            data_dir=tmp,
            manifest=fx.write_manifest(),
            ca=fx.ca_path,
            fingerprint=fx.ca_fingerprint,
            n_agents=2,
            log=log,
        )
        broker = Server(ctx, "broker", tls_read_buffer=TUNED).start()
        try:
            for resume in (False, True):
                row = {
                    "server": "broker",
                    "resume": resume,
                    **_measure(ctx, broker.pid, broker.port, args, resume),
                }
                rows.append(row)
                log(f"  {row}")
        finally:
            broker.stop()
        port = free_port()
        bare_child = Child(
            ["-m", "bench.tls_handshakes", "bare", "--data-dir", str(tmp), "--port", str(port)],
            name="bare-tls",
        )
        try:
            bare_child.wait_for("listening", timeout=30)
            for resume in (False, True):
                row = {
                    "server": "bare",
                    "resume": resume,
                    **_measure(ctx, bare_child.pid, port, args, resume),
                }
                rows.append(row)
                log(f"  {row}")
        finally:
            bare_child.stop(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare_rows = {r["resume"]: r for r in rows if r["server"] == "bare"}
    print("| server | handshake | per s | server CPU % | per core (per CPU-second) | × bare | resumed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        base = bare_rows[r["resume"]]["per_core"]
        ratio = f"{r['per_core'] / base:.2f}×" if r["server"] == "broker" and base and r["per_core"] else "-"
        print(
            f"| {r['server']} | {'resumed' if r['resume'] else 'full'} | {r['handshakes_per_s']:.0f} "
            f"| {r['server_cpu_pct']:.0f} | {r['per_core']} | {ratio} "
            f"| {r['reused']:,} of {r['handshakes']:,} |"
        )
    print(
        json.dumps(
            {
                "bench": "tls_handshakes",
                "started_at": started,
                "machine": machine,
                "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()],
                "rows": rows,
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
