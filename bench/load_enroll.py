"""``python -m bench.loadgen enroll``: full enrollments with a few in flight, or bare TLS WebSocket
connects against the echo server (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bench.common import emit
from bench.load_io import client_context


async def run_enroll(args: argparse.Namespace) -> None:
    from agent.enroll import enroll

    items: list[list[str]] = json.loads(Path(args.tokens).read_text()) if args.tokens else []
    count = args.count
    done = 0
    failed = 0
    sem = asyncio.Semaphore(args.concurrency)
    tmp = Path(tempfile.mkdtemp(prefix="bench-enroll-"))
    ctx = client_context(args.ca)

    async def one(i: int) -> None:
        nonlocal done, failed
        async with sem:
            try:
                if args.baseline:
                    async with connect(
                        f"{args.url}/echo", ssl=ctx, ping_interval=None, compression=None, open_timeout=30
                    ) as ws:
                        await ws.send('{"type":"hello"}')
                        await ws.recv()
                else:
                    contract, token = items[i]
                    await enroll(
                        broker_url=args.url,
                        contract_id=contract,
                        token=token,
                        ca_fingerprint=args.fingerprint,
                        data_dir=tmp / str(i),
                        confirm=lambda _: True,
                        machine_name=f"pc-{i}",
                    )
                done += 1
            except Exception as exc:  # counted and reported, the run goes on
                failed += 1
                if failed <= 3:
                    print(f"enroll {i} failed: {exc!r}", file=sys.stderr)

    n = count if args.baseline else min(count, len(items))
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(args.max_seconds):
            await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit({"event": "result", "done": done, "failed": failed, "elapsed": time.perf_counter() - t0})
