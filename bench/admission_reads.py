"""The admission's read on PostgreSQL: one statement alone against the same statement in a read
transaction, measured in the same run.

``python -m bench.admission_reads [--reads 20000] [--concurrency 8] [--rounds 3] [--postgres URL]``

Every agent that connects (and every one of the thousands that reconnect after a process dies) is
admitted by one read of its certificate and contract (``Certificates.with_subscriber``). In a read
transaction that is four round trips to PostgreSQL (``BEGIN``, ``SET TRANSACTION … READ ONLY``, the
``SELECT``, ``COMMIT``); ``Database.read_statement`` sends the ``SELECT`` alone on the pool's
autocommit connection. Here ``--concurrency`` tasks share one broker's pool (8 connections, as
shipped) and read ``--reads`` admissions in all, each way, alternating for ``--rounds``; reported:
reads per second and this process's CPU per read (the broker's side; PostgreSQL's own CPU is not
counted), and their ratios. A fresh database is created on the server and dropped at the end.
Bounded by ``--reads`` × ``--rounds`` × 2 reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench.cluster_fixtures import ADMIN_URL, postgres_database
from broker.storage import Storage, open_storage, repo_contracts
from broker.store import CertificateRecord

SERIAL = "5e71a1"


async def _enrol_one(storage: Storage) -> None:
    now = time.time()
    await storage.subscribers.add("C-BENCH", now=now, actor="bench")
    await storage.subscribers.add_enrollment_token(
        "C-BENCH", "tok", now=now, expires_at=now + 600, actor="bench"
    )
    record = CertificateRecord(
        serial=SERIAL,
        contract_id="C-BENCH",
        machine_name="pc",
        cert_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        issued_at=now,
        not_after=now + 86_400,
    )
    await storage.subscribers.complete_enrollment("tok", record, now=now + 1)


def _ways(storage: Storage) -> dict[str, Callable[[], Coroutine[Any, Any, object]]]:
    async def in_transaction() -> object:
        async with storage.db.read() as tx:
            return (await repo_contracts.get_certificates_and_subscribers(tx, [SERIAL])).get(SERIAL)

    async def one_statement() -> object:
        return await storage.certificates.with_subscriber(SERIAL)

    return {"transaction": in_transaction, "statement": one_statement}


async def _measure(
    read: Callable[[], Coroutine[Any, Any, object]], reads: int, concurrency: int
) -> dict[str, float]:
    share = reads // concurrency

    async def worker() -> None:
        for _ in range(share):  # bounded
            if await read() is None:
                raise RuntimeError("the enrolled certificate was not found")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = share * concurrency
    return {"reads_per_s": done / wall, "cpu_us_per_read": cpu / done * 1e6}


async def main(reads: int, concurrency: int, rounds: int, admin_url: str) -> dict[str, Any]:
    with postgres_database(admin_url, prefix="bench_admission") as url:
        storage = await open_storage(url)
        try:
            await _enrol_one(storage)
            ways = _ways(storage)
            for read in ways.values():  # warm the pool and the prepared statements
                await _measure(read, concurrency * 50, concurrency)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
            for _ in range(rounds):
                for name, read in ways.items():
                    runs[name].append(await _measure(read, reads, concurrency))
        finally:
            await storage.close()
    result: dict[str, Any] = {"reads": reads, "concurrency": concurrency, "rounds": rounds}
    for name, samples in runs.items():
        result[name] = {
            key: round(statistics.median(s[key] for s in samples), 1)
            for key in ("reads_per_s", "cpu_us_per_read")
        }
    result["throughput_ratio"] = round(
        result["statement"]["reads_per_s"] / result["transaction"]["reads_per_s"], 2
    )
    result["cpu_ratio"] = round(
        result["statement"]["cpu_us_per_read"] / result["transaction"]["cpu_us_per_read"], 2
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=ADMIN_URL, metavar="URL", help="an administrator's URL")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.reads, args.concurrency, args.rounds, args.postgres))))
