"""Cost of the login/enrollment limit per address now that it is shared (``broker.cluster_host``).

``python -m bench.shared_limits [--n 300] [--postgres URL]``: times ``SharedAddressLimit.hit`` for
``n`` attempts from ``n`` different addresses (each one a database write: the worst case) on SQLite
(a temporary file) and, with ``--postgres``, on PostgreSQL, against the in-memory ``RateLimit`` it
replaces, measured in the same run. Prints medians and p99 in ms as JSON. An address already over
its limit on this process never reaches the database (the in-memory window is checked first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from broker.cluster_host import SharedAddressLimit
from broker.policy import RateLimit
from broker.storage import open_storage
from broker.storage.guards import SharedLimits


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 4),
    }


async def _shared(url: str | Path, n: int) -> dict[str, float]:
    storage = await open_storage(url)
    try:
        limit = SharedAddressLimit("login", 20, 60.0)
        limit.attach(SharedLimits(storage.db))
        samples = []
        now = time.time()
        for i in range(n):  # bounded
            start = time.perf_counter()
            await limit.hit(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now)
            samples.append(time.perf_counter() - start)
        return _summary(samples)
    finally:
        await storage.close()


def _memory(n: int) -> dict[str, float]:
    limit = RateLimit(20, 60.0)
    samples = []
    now = time.time()
    for i in range(n):  # bounded
        start = time.perf_counter()
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        if limit.check(address, now) is None:
            limit.record(address, now)
        samples.append(time.perf_counter() - start)
    return _summary(samples)


async def main(n: int, postgres: str | None) -> dict[str, object]:
    result: dict[str, object] = {"n": n, "in_memory": _memory(n)}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = await _shared(Path(tmp) / "bench.sqlite3", n)
    if postgres:
        result["postgresql"] = await _shared(postgres, n)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--postgres", default=None, metavar="URL")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.n, args.postgres))))
