"""What every load process shares: the TLS client context, the harness's commands on stdin (a
bounded loop over them), and waiting for one kind of JSON message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection

from bench.common import MiB

MAX_SIZE = 8 * MiB


def client_context(ca: str, pem: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca)
    if pem is not None:
        ctx.load_cert_chain(pem)
    return ctx


def commands() -> asyncio.Queue[dict[str, Any]]:
    """Lines of stdin as a queue; EOF becomes ``{"cmd": "quit"}``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(queue.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(queue.put_nowait, {"cmd": "quit"})

    threading.Thread(target=pump, daemon=True).start()
    return queue


async def recv_json(ws: ClientConnection, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """The next text message of ``kind``; others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                message: dict[str, Any] = json.loads(frame)
                if message.get("type") == kind:
                    return message
                if message.get("type") == "error":
                    raise RuntimeError(f"waiting for {kind}: {message}")


async def until_quit(
    queue: asyncio.Queue[dict[str, Any]], max_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """The harness's commands until "quit" or ``max_seconds``: every load loop stops by itself."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                cmd = await queue.get()
        except TimeoutError:
            return
        if cmd["cmd"] == "quit":
            return
        yield cmd
