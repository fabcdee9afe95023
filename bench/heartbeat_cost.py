"""What one heartbeat costs a server: a WebSocket Ping control frame vs a JSON ``ping`` message.

``python -m bench.heartbeat_cost [--connections 200] [--rate 500] [--seconds 10]``

A bare ``websockets`` TLS server in its own process (the same library and options as the broker's
baselines in ``bench/baseline_server.py``) answers both kinds: a Ping frame is answered with a Pong
inside websockets' protocol (below any JSON), a text ``{"type":"ping"}`` is decoded with msgspec and
answered with ``{"type":"pong"}`` (the shape of today's agent heartbeat, without the broker's link
state and presence bookkeeping, so a lower bound for it). The client spreads ``rate`` heartbeats a
second over ``connections`` TLS connections for ``seconds``; the server's CPU time is read from
``/proc`` (psutil) before and after, and an idle window of the same length is subtracted.
Prints one JSON line. docs/cluster.md uses the result for the heartbeat arithmetic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

PING = b'{"type":"ping"}'
PONG = '{"type":"pong"}'


class _Ping(msgspec.Struct):
    type: str


_decode = msgspec.json.Decoder(_Ping).decode


def make_cert(directory: Path, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed P-256 certificate and its key (``cert.pem``, ``key.pem`` in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _handler(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if _decode(message).type == "ping":
                await ws.send(PONG)


async def serve_forever(port: int, cert: Path, key: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(_handler, "127.0.0.1", port, ssl=ctx, ping_interval=None, compression=None):
        print("listening", flush=True)
        await stop.wait()


async def load(
    port: int, connections: int, rate: float, seconds: float, server: psutil.Process
) -> dict[str, float]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    clients: list[ClientConnection] = [
        await connect(f"wss://127.0.0.1:{port}/", ssl=ctx, ping_interval=None, compression=None)
        for _ in range(connections)
    ]

    async def drain(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    readers = [asyncio.create_task(drain(ws)) for ws in clients]

    def cpu() -> float:
        t = server.cpu_times()
        return float(t.user + t.system)

    async def window(kind: str) -> float:
        count = int(rate * seconds)
        start_cpu, start = cpu(), time.perf_counter()
        for i in range(count):
            ws = clients[i % connections]
            if kind == "control":
                await ws.ping()
            elif kind == "json":
                await ws.send(PING.decode())
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.5)  # let the last answers be processed
        return cpu() - start_cpu

    idle = await window("idle")
    control = await window("control")
    as_json = await window("json")
    for ws in clients:
        await ws.close()
    for task in readers:
        task.cancel()
    pings = rate * seconds
    return {
        "connections": connections,
        "rate_per_s": rate,
        "seconds": seconds,
        "idle_cpu_s": round(idle, 3),
        "control_frame_us_per_ping": round((control - idle) / pings * 1e6, 1),
        "json_us_per_ping": round((as_json - idle) / pings * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.heartbeat_cost")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_forever(args.serve, args.cert, args.key))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(Path(tmp))
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.heartbeat_cost",
                "--serve",
                str(port),
                "--cert",
                str(cert),
                "--key",
                str(key),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "listening"
            result = asyncio.run(
                load(port, args.connections, args.rate, args.seconds, psutil.Process(proc.pid))
            )
        finally:
            proc.terminate()
            proc.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
