"""A separate process that appends audit entries: ``python -m tests.broker.storage.appender URL TAG N GO``.

Opens its own storage (its own connections), waits until the file ``GO`` exists so that every
appender starts at once, appends ``N`` entries with ``subject=TAG`` from 4 concurrent coroutines,
and prints ``done``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from broker.storage import open_storage
from tests.broker.storage.start_signal import ready_then_wait_for

COROUTINES = 4


async def main(url: str, tag: str, count: int, go: Path) -> None:
    storage = await open_storage(url)
    try:
        await ready_then_wait_for(go)

        async def worker(w: int) -> None:
            for i in range(w, count, COROUTINES):
                await storage.audit.append(
                    actor=f"test:{tag}", action="test.append", subject=tag, details={"i": i}, now=time.time()
                )

        await asyncio.gather(*(worker(w) for w in range(COROUTINES)))
    finally:
        await storage.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
