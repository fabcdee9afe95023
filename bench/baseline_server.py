"""Baselines measured beside the broker: ``python -m bench.baseline_server MODE --data-dir D --port P``.

``echo``   a bare ``websockets`` TLS server that sends every message back (idle-agent baseline).
``relay``  a bare ``websockets`` TLS relay: ``/a/ID`` and ``/o/ID`` are joined, nothing else.
``sink``   raw TLS over asyncio streams: length-prefixed frames are read and dropped; a zero-length
           frame is answered with ``ok`` (the throughput ceiling of Python's ssl module here).

Same TLS setup as the broker (its server certificate, client certificate optional and verified
against its CA), same ``websockets`` options (no compression, no keepalive pings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import struct
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.common import emit, raise_nofile
from broker import tuning

MAX_SIZE = 8 * 1024 * 1024
LENGTH = struct.Struct(">I")


def server_context(data_dir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(data_dir / "server.pem", data_dir / "server-key.pem")
    ctx.load_verify_locations(cafile=str(data_dir / "ca.pem"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def _echo(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


class Relay:
    def __init__(self) -> None:
        self.waiting: dict[str, tuple[ServerConnection, asyncio.Future[ServerConnection]]] = {}

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = ws.request.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("a", "o"):
            await ws.close(1008, "bad path")
            return
        key = parts[1]
        entry = self.waiting.pop(key, None)
        if entry is None:
            future: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()
            self.waiting[key] = (ws, future)
            partner = await future
        else:
            partner = entry[0]
            entry[1].set_result(ws)
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await partner.send(message)
        with contextlib.suppress(ConnectionClosed):
            await partner.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            (size,) = LENGTH.unpack(await reader.readexactly(4))
            if size == 0:
                writer.write(b"ok")
                await writer.drain()
                continue
            await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def run(mode: str, data_dir: Path, port: int) -> None:
    ctx = server_context(data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if mode == "sink":
        server = await asyncio.start_server(_sink, "127.0.0.1", port, ssl=ctx, backlog=1024)
        emit({"event": "listening", "port": port})
        await stop.wait()
        server.close()
        return
    handler = _echo if mode == "echo" else Relay().handle
    async with serve(
        handler,
        "127.0.0.1",
        port,
        ssl=ctx,
        max_size=MAX_SIZE,
        ping_interval=None,
        compression=None,
        server_header=None,  # backlog: asyncio's default (100), as the broker's listener
    ):
        emit({"event": "listening", "port": port})
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server")
    parser.add_argument("mode", choices=("echo", "relay", "sink"))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-read-buffer", type=int, default=tuning.DEFAULT_TLS_READ_BUFFER)
    args = parser.parse_args()
    raise_nofile()
    if args.tls_read_buffer:
        tuning.set_tls_read_buffer(args.tls_read_buffer)
    asyncio.run(run(args.mode, args.data_dir, args.port))


if __name__ == "__main__":
    main()
