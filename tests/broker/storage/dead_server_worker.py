"""Run by ``test_dead_server.py`` inside a network namespace of its own (``unshare -n``): a private
PostgreSQL server on the namespace's loopback, then the loopback taken down under the broker's
connection pool, as when the database host loses power: no reset, no answer, nothing.

Prints one JSON line: for a query sent to the dead server and for one already waiting for its answer,
how long until it failed and with what; and whether the pool answered again once the link was back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from broker.storage.db import is_storage_failure
from broker.storage.postgres import PostgresDatabase

DEAD_SERVER_TIMEOUT = 2.0
PORT = 5432  # the namespace's own loopback: no other server there


def _link(state: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", state], check=True)


def _start_server(pg_bin: Path, data: Path) -> subprocess.Popen[bytes]:
    shutil.chown(data.parent, "postgres")
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
    )
    settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(PORT), "-c", "fsync=off"]
    server = subprocess.Popen(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(pg_bin / "postgres"),
            "-D",
            str(data),
            "-k",
            str(data),
            *settings,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:  # bounded by the deadline
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{PORT}/postgres", connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)


async def _fails_within(run: Any, *, limit: float) -> dict[str, Any]:
    start = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            await run()
    except TimeoutError:
        return {"failed": False, "seconds": round(time.monotonic() - start, 2)}
    except Exception as exc:
        return {
            "failed": True,
            "storage_failure": is_storage_failure(exc),
            "kind": type(exc).__name__,
            "seconds": round(time.monotonic() - start, 2),
        }
    return {"failed": False, "answered": True, "seconds": round(time.monotonic() - start, 2)}


async def _check(url: str) -> dict[str, Any]:
    db = PostgresDatabase(url, max_connections=2, connect_timeout=5, dead_server_timeout=DEAD_SERVER_TIMEOUT)
    await db.open()

    async def one(sql: str) -> None:
        async with db.read_statement() as tx:
            await tx.fetchone(sql)

    async def answers_again() -> dict[str, Any]:
        """Once the host is back: the pool drops what died with it; how long until a read answers."""
        start, failures = time.monotonic(), 0
        while time.monotonic() - start < 30:  # bounded
            try:
                await one("SELECT 1")
            except Exception as exc:
                if not is_storage_failure(exc):
                    raise
                failures += 1
                await asyncio.sleep(0.1)
            else:
                return {"answered": True, "seconds": round(time.monotonic() - start, 2), "failures": failures}
        return {"answered": False, "failures": failures}

    try:
        await one("SELECT 1")
        result: dict[str, Any] = {}
        _link("down")  # the query goes out to a host that no longer answers
        result["sent_to_dead_server"] = await _fails_within(lambda: one("SELECT 1"), limit=60)
        _link("up")
        result["after_sent"] = await answers_again()

        waiting = asyncio.create_task(one("SELECT pg_sleep(4)"))
        await asyncio.sleep(0.5)  # sent and acknowledged; its answer is what never comes
        _link("down")

        async def wait() -> None:
            await waiting

        result["waiting_on_dead_server"] = await _fails_within(wait, limit=60)
        _link("up")
        result["after_waiting"] = await answers_again()
        return result
    finally:
        _link("up")
        await db.close()


def main(pg_bin: Path) -> None:
    _link("up")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pg"
        data.mkdir()
        shutil.chown(data, "postgres")
        server = _start_server(pg_bin, data)
        try:
            result = asyncio.run(_check(f"postgresql://postgres@127.0.0.1:{PORT}/postgres"))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
