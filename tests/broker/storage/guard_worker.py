"""A separate process that claims codes or hits limits: ``python -m tests.broker.storage.guard_worker
URL GO MODE NOW ARGS…``; prints one JSON line with its outcomes.

Opens its own storage (its own connections), waits until the file ``GO`` exists so that every worker
starts at once, then runs ``COROUTINES`` concurrent coroutines:

- ``claim CODE…``: each coroutine (operator ``<pid>-<n>``) tries to claim every code; outcome per
  success: the code.
- ``hit KEY N LIMIT``: N hits on KEY (window 60 s); outcome per hit: "ok" or "limited".
- ``wrong OPERATOR N``: N claims of a code nobody holds; outcome: the refusal's code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from broker.errors import RefusedError
from broker.storage import open_storage
from broker.storage.guards import CodeRules, SharedLimits, SupportCodes
from tests.broker.storage.start_signal import ready_then_wait_for

COROUTINES = 4
#: The race test lets every coroutine try every code: no rate limit or lockout may get in the way.
GENEROUS = CodeRules(
    max_per_window_per_operator=10_000, max_per_window_per_address=10_000, lockout_after=10_000
)


async def main(url: str, go: Path, mode: str, now: float, args: list[str]) -> None:
    storage = await open_storage(url)
    outcomes: list[str] = []
    try:
        await ready_then_wait_for(go)

        async def claim(worker: int) -> None:
            codes = SupportCodes(storage.db, rules=GENEROUS)
            order = args[worker::1] + args[:worker]  # each coroutine starts at another code
            for code in order:
                try:
                    row = await codes.claim(
                        code, operator=f"{os.getpid()}-{worker}", address=f"{os.getpid()}-{worker}", now=now
                    )
                except RefusedError as exc:
                    if exc.code.value != "code_invalid":
                        raise SystemExit(f"unexpected refusal {exc.code}") from exc
                else:
                    outcomes.append(row.code)

        async def hit(worker: int) -> None:
            limits = SharedLimits(storage.db)
            key, n, limit = args[0], int(args[1]), int(args[2])
            for _ in range(worker, n, COROUTINES):
                wait = await limits.hit(key, limit=limit, window=60.0, now=now)
                outcomes.append("ok" if wait is None else "limited")

        async def wrong(worker: int) -> None:
            codes = SupportCodes(storage.db)
            operator, n = args[0], int(args[1])
            for _ in range(worker, n, COROUTINES):
                try:
                    await codes.claim("000000", operator=operator, address=f"192.0.2.{worker}", now=now)
                except RefusedError as exc:
                    outcomes.append(exc.code.value)

        job = {"claim": claim, "hit": hit, "wrong": wrong}[mode]
        await asyncio.gather(*(job(w) for w in range(COROUTINES)))
    finally:
        await storage.close()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
