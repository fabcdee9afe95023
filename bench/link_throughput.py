"""Throughput of the node-to-node link (``broker/cluster/link.py``) between two processes.

``python -m bench.link_throughput [--seconds 5] [--size 65536]``: node B listens in a child process
and counts the bytes of the screen frames it receives; node A (this process) sends frames of
``size`` bytes as fast as the link takes them (waiting while its send buffer is above the screen
high-water mark, so nothing is dropped) for ``seconds``. Prints MB/s and frames/s as JSON. Real TLS
1.3 with the cluster CA's certificates, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import subprocess
import sys
import time
from datetime import UTC, datetime

from broker.cluster.link import (
    DEFAULT_SCREEN_HIGH_WATER,
    ClusterCA,
    Frame,
    Link,
    LinkServer,
    NodeCredentials,
    dial,
)


async def receiver(creds: NodeCredentials) -> None:
    total = [0, 0]

    def on_frame(link: Link, frame: Frame) -> None:
        total[0] += len(frame.payload)
        total[1] += 1
        if frame.kind.name == "END":
            print(json.dumps({"bytes": total[0], "frames": total[1] - 1}), flush=True)

    server = LinkServer(creds, on_frame)
    port = await server.start("127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.sleep(3600)


async def sender(creds: NodeCredentials, port: int, seconds: float, size: int) -> float:
    link = await dial(creds, "node-b", "127.0.0.1", port, lambda link, frame: None)
    payload = b"\x00" * size
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not link.send_screen("s1", payload):
            await asyncio.sleep(0.001)
        elif (
            link.transport is not None and link.transport.get_write_buffer_size() > DEFAULT_SCREEN_HIGH_WATER
        ):
            await asyncio.sleep(0)
    link.send_end("s1")
    # Everything must leave this process before the loop closes (asyncio.run drops unsent buffers).
    deadline = time.monotonic() + 30
    while (
        link.transport is not None and link.transport.get_write_buffer_size() and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    link.close()
    await asyncio.sleep(0.1)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.link_throughput")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        asyncio.run(receiver(pickle.loads(sys.stdin.buffer.read())))  # noqa: S301 (our own parent)
        return
    now = datetime.now(UTC)
    ca = ClusterCA.create(now=now)
    a, b = ca.issue("node-a", host="127.0.0.1", now=now), ca.issue("node-b", host="127.0.0.1", now=now)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.link_throughput", "--receive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(pickle.dumps(b))
        child.stdin.close()
        port = int(child.stdout.readline())
        elapsed = asyncio.run(sender(a, port, args.seconds, args.size))
        got = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
    print(
        json.dumps(
            {
                "size": args.size,
                "seconds": round(elapsed, 2),
                "MB_per_s": round(got["bytes"] / elapsed / 1e6, 1),
                "frames_per_s": round(got["frames"] / elapsed),
            }
        )
    )


if __name__ == "__main__":
    main()
