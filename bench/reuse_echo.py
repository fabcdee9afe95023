"""The bare ``websockets`` echo server on a shared port: ``python -m bench.reuse_echo --data-dir D --port P``.

``bench.baseline_server echo`` (same certificate, TLS settings, ``websockets`` options, the broker's TLS
read buffer) with ``SO_REUSEPORT``, so several processes hold as many connections as several
``serve --reuse-port`` brokers: the baseline of ``bench.cluster_idle`` at the same connection
count, which one process cannot hold under a 20,000 open-file limit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from websockets.asyncio.server import serve

from bench.baseline_server import MAX_SIZE, _echo, server_context
from bench.common import emit, raise_nofile
from broker import tuning


async def run(data_dir: Path, port: int) -> None:
    ctx = server_context(data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        _echo,
        "127.0.0.1",
        port,
        ssl=ctx,
        max_size=MAX_SIZE,
        ping_interval=None,
        compression=None,
        server_header=None,
        reuse_port=True,
        backlog=2048,  # as the broker's listen_backlog
    ):
        emit({"event": "listening", "port": port})
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reuse_echo", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-read-buffer", type=int, default=tuning.DEFAULT_TLS_READ_BUFFER)
    args = parser.parse_args(argv)
    raise_nofile()
    if args.tls_read_buffer:
        tuning.set_tls_read_buffer(args.tls_read_buffer)
    asyncio.run(run(args.data_dir, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
